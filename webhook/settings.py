"""What `serve` is configured with, in a module of the standard library only.

`bond-injector serve --workers N` runs a supervisor that only binds the socket, starts the workers
and restarts them; it imports this, not the app (starlette, prometheus_client, cryptography,
PyYAML), which only the workers load (webhook/server.py; the test is
tests/webhook/test_cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The API server sends at most a 3 MiB object; the review around it adds the old object too.
DEFAULT_MAX_BODY = 7 * 1024 * 1024
# Seconds a connection has to send a complete request header (webhook/headertimeout.py).
DEFAULT_HEADER_TIMEOUT = 10.0


@dataclass(frozen=True)
class Settings:
    profiles: Path
    max_body_bytes: int = DEFAULT_MAX_BODY
