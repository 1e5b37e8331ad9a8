"""POST /mutate as a raw ASGI endpoint: bytes in, AdmissionReview out, no per-request models.

The only module that touches HTTP for admissions; the decision is webhook.mutation's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
from starlette.types import Receive, Scope, Send

from webhook import admission
from webhook.metrics import Metrics
from webhook.mutation import Decision, mutate
from webhook.nads import NadSource, NetworkAttachmentDefinition
from webhook.profiles import ProfileStore

log = logging.getLogger("webhook.admission")
_JSON = [(b"content-type", b"application/json")]
_MAX_FETCH_ROUNDS = 4  # the mutation stops at the first missing NAD; each round may reveal one more


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Disconnected(Exception):
    pass


class MutateEndpoint:
    def __init__(
        self,
        profiles: ProfileStore,
        nads: NadSource,
        metrics: Metrics,
        clock: Callable[[], float],
        max_body_bytes: int,
    ) -> None:
        self._profiles = profiles
        self._nads = nads
        self._metrics = metrics
        self._clock = clock
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._clock()
        entry: dict[str, Any] = {"msg": "admission"}
        try:
            body = await self._read_body(scope, receive)
            status, payload = 200, await self._review(body, entry)
        except _HttpError as exc:
            status, payload = exc.status, {"error": exc.message}
            entry.update(outcome="invalid", message=exc.message)
        except _Disconnected:
            return
        data = orjson.dumps(payload)
        headers = [*_JSON, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        seconds = self._clock() - started
        self._metrics.observe(entry["outcome"], seconds)
        entry["duration_ms"] = round(seconds * 1000, 3)
        log.info(orjson.dumps(entry).decode())

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json":
            raise _HttpError(415, f"Content-Type must be application/json, got {ctype.decode()!r}")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _HttpError(413, f"body larger than {self._max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _HttpError(413, f"body larger than {self._max_body} bytes")
            if not message.get("more_body", False):
                return chunk if not chunks else b"".join([*chunks, chunk])
            chunks.append(chunk)

    async def _review(self, body: bytes, entry: dict[str, Any]) -> dict[str, Any]:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _HttpError(400, f"body is not JSON: {exc}") from None
        try:
            request = admission.parse_review(decoded)
        except admission.ReviewError as exc:
            raise _HttpError(400, str(exc)) from None
        entry.update(uid=request.uid, namespace=request.namespace, operation=request.operation)
        if request.dry_run:
            entry["dry_run"] = True
        if not request.is_pod_create:
            entry["outcome"] = "ignored"
            return admission.review(admission.allowed(request.uid))
        if request.object is None:
            raise _HttpError(400, "request.object is missing; a CREATE review carries the Pod")
        meta = request.object.get("metadata") or {}
        entry["name"] = meta.get("name") or request.name or f"{meta.get('generateName', '')}*"
        try:
            decision = await self._decide(request)
        except Exception as exc:
            log.exception("mutation of %s failed", request.uid)
            entry.update(outcome="error", message=f"{type(exc).__name__}: {exc}")
            text = f"bond-injector could not decide ({type(exc).__name__}: {exc}); see its log"
            return admission.review(admission.errored(request.uid, 500, text))
        entry["outcome"] = decision.outcome
        if decision.warnings:
            entry["warnings"] = list(decision.warnings)
        if not decision.allowed:
            entry["message"] = decision.message
            return admission.review(
                admission.denied(request.uid, decision.message, decision.warnings)
            )
        entry["patch_ops"] = len(decision.patch)
        return admission.review(admission.patched(request.uid, decision.patch, decision.warnings))

    async def _decide(self, request: admission.Request) -> Decision:
        assert request.object is not None
        profiles = self._profiles.current()
        fetched: dict[tuple[str, str], NetworkAttachmentDefinition | None] = {}
        for _ in range(_MAX_FETCH_ROUNDS):
            lookup = _RecordingLookup(self._nads, fetched)
            decision = mutate(request.object, request.namespace or None, profiles, lookup)
            if not lookup.misses:
                return decision
            # Not in the cache: ask the API server, off the event loop.
            for key in lookup.misses:
                self._metrics.nad_fetches.inc()
                fetched[key] = await anyio.to_thread.run_sync(self._nads.fetch, *key)
        return decision


class _RecordingLookup:
    """Cache first, then what was fetched; remembers the keys neither had."""

    def __init__(
        self,
        nads: NadSource,
        fetched: dict[tuple[str, str], NetworkAttachmentDefinition | None],
    ) -> None:
        self._nads = nads
        self._fetched = fetched
        self.misses: list[tuple[str, str]] = []

    def __call__(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        key = (namespace, name)
        if key in self._fetched:
            return self._fetched[key]
        nad = self._nads.cached(namespace, name)
        if nad is None:
            self.misses.append(key)
        return nad
