"""What `serve` is configured with, in a module of the standard library only.

`bond-injector serve --workers N` runs a supervisor that only binds the socket, starts the workers
and restarts them; it imports this, not the app (starlette, prometheus_client, cryptography,
PyYAML), which only the workers load (webhook/server.py; the test is
tests/webhook/test_cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The largest AdmissionReview the API server can send us. Its `object` is the Pod being created,
# and kube-apiserver accepts at most 3 MiB of request body from a client (MaxRequestBodyBytes in
# k8s.io/apiserver/pkg/server/config.go: twice etcd's default 1.5 MiB --max-request-bytes, since
# JSON is larger than the protobuf etcd stores); a Pod bigger than that is refused with 413 before
# admission. `oldObject` is null: the chart registers CREATE only (an UPDATE's old object, read
# from etcd, would add up to 3 MiB more as JSON). 256 KiB on top cover the envelope (uid, kinds,
# userInfo, options), the defaults the API server adds and mutating webhooks that ran before us.
# The 7 MiB we accepted before let one body of `[{},{},...]` grow the worker by ~190 MiB.
DEFAULT_MAX_BODY = 3 * 1024 * 1024 + 256 * 1024
# Body bytes one worker holds at once, across its requests, from reading until the answer is
# sent (503 beyond). Decoded, a body costs up to ~25 times its size (3.25 MiB of `[{},...]`
# decodes to ~80 MiB of dicts), so two of the largest at once, plus the ~55 MiB the worker needs,
# stay under the chart's 256 MiB limit; hundreds of ordinary (~10 KiB) reviews fit beside them.
DEFAULT_MAX_INFLIGHT_BODY = 2 * DEFAULT_MAX_BODY
# Seconds a connection has to send a complete request header (webhook/headertimeout.py).
DEFAULT_HEADER_TIMEOUT = 10.0
# Seconds a connection has to send a whole request, header and body: the API server waits
# `timeoutSeconds` (at most 30 s, default 10 s) for the answer, so a body that is still arriving
# later is nobody's. The chart passes its `webhook.timeoutSeconds`.
DEFAULT_REQUEST_TIMEOUT = 10.0
# Connections (and requests in progress) one worker serves at once; beyond, a request is answered
# 503 (webhook/headertimeout.py applies uvicorn's limit_concurrency). Each connection costs
# ~40 KiB (its 32 KiB TLS buffer), so the default bounds those to ~10 MiB.
DEFAULT_LIMIT_CONCURRENCY = 256


@dataclass(frozen=True)
class Settings:
    profiles: Path
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY
