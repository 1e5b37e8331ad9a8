"""`python -m webhook ...`: the same as `bond-injector ...`."""

from __future__ import annotations

from webhook.cli import main

raise SystemExit(main())
