"""`python -m certs ...`: the same as `bond-injector certs ...`."""

from __future__ import annotations

from certs.cli import run

run()
