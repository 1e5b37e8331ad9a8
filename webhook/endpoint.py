"""POST /mutate as a raw ASGI endpoint: bytes in, AdmissionReview out, no per-request models.

The only module that touches HTTP for admissions; the decision is webhook.mutation's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.types import Receive, Scope, Send

from webhook import admission
from webhook.metrics import Metrics
from webhook.mutation import Decision, prepare
from webhook.nads import NadFetchError, NadSource, NetworkAttachmentDefinition, could_exist
from webhook.profiles import ProfileStore

log = logging.getLogger("webhook.admission")
_JSON = [(b"content-type", b"application/json")]
_Key = tuple[str, str]


class _HttpError(Exception):
    def __init__(
        self, status: int, message: str, *, close: bool = False, outcome: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome
        self.close = close  # the body may still be arriving: end the connection after answering


class BodyBudget:
    """Request-body bytes one worker holds at once, across all its requests.

    Each request takes its bytes as they arrive (all of a declared Content-Length at once) and
    gives them back when answered; what does not fit is refused with 503. The event loop is one
    thread, so plain arithmetic is safe.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class _Disconnected(Exception):
    pass


@dataclass
class _Held:
    """The budget bytes one request holds."""

    bytes: int = 0


@dataclass
class _LogLine:
    """The one log line of a request: its fields, and the exception of a failed decision."""

    fields: dict[str, Any] = field(default_factory=lambda: {"msg": "admission"})
    level: int = logging.INFO
    error: BaseException | None = None


class MutateEndpoint:
    def __init__(
        self,
        profiles: ProfileStore,
        nads: NadSource,
        metrics: Metrics,
        clock: Callable[[], float],
        *,
        max_body_bytes: int,
        budget: BodyBudget,
    ) -> None:
        self._profiles = profiles
        self._nads = nads
        self._metrics = metrics
        self._clock = clock
        self._max_body = max_body_bytes
        self._budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self._clock()
        line = _LogLine()
        entry = line.fields
        held = _Held()
        headers = [*_JSON]
        try:
            try:
                body = await self._read_body(scope, receive, held)
                status, payload = 200, await self._review(body, line)
            except _HttpError as exc:
                status, payload = exc.status, {"error": exc.message}
                entry.update(outcome=exc.outcome, message=exc.message)
                if exc.close:
                    headers.append((b"connection", b"close"))
            except _Disconnected:
                return
            data = orjson.dumps(payload)
            headers.append((b"content-length", str(len(data)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
        finally:
            self._budget.give(held.bytes)
        seconds = self._clock() - started
        self._metrics.observe(entry["outcome"], seconds)
        entry["duration_ms"] = round(seconds * 1000, 3)
        log.log(line.level, orjson.dumps(entry).decode(), exc_info=line.error)

    async def _read_body(self, scope: Scope, receive: Receive, held: _Held) -> bytes | bytearray:
        """The body, refused before it is read when its Content-Length is too large and as soon
        as it grows too large when chunked; its bytes count against the worker's budget."""
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json":
            got = ctype.decode("latin-1")
            raise _HttpError(415, f"Content-Type must be application/json, got {got!r}")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit():
            self._hold(held, self._check_size(int(declared)))
        buffer = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            if declared is None:  # chunked: refused as soon as it grows too large
                self._check_size(len(buffer) + len(chunk))
                self._hold(held, len(chunk))
            if not message.get("more_body", False):
                if not buffer:
                    return chunk
                buffer += chunk
                return buffer
            buffer += chunk

    def _check_size(self, size: int) -> int:
        if size > self._max_body:
            raise _HttpError(
                413,
                f"request body is larger than the webhook's --max-body-bytes ({self._max_body}); "
                "the API server sends at most a 3 MiB Pod, so this is no AdmissionReview from "
                "it; if yours accepts larger objects, raise --max-body-bytes",
                close=True,
            )
        return size

    def _hold(self, held: _Held, size: int) -> None:
        if not self._budget.take(size):
            raise _HttpError(
                503,
                f"request body: this worker holds {self._budget.held} bytes of other requests' "
                f"bodies and {size} more would pass --max-inflight-body-bytes "
                f"({self._budget.limit}); retry shortly, or run more replicas",
                close=True,
                outcome="overloaded",
            )
        held.bytes += size

    async def _review(self, body: bytes | bytearray, line: _LogLine) -> dict[str, Any]:
        entry = line.fields
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
        entry["name"] = _name(request)
        try:
            decision = await self._decide(request)
        except NadFetchError as exc:  # the API server, not the pod: no traceback, retry may work
            line.level = logging.ERROR
            entry.update(outcome="error", message=str(exc))
            text = f"bond-injector could not decide: {exc}; the API server may be overloaded"
            return admission.review(admission.errored(request.uid, 500, text))
        except Exception as exc:  # a bug: its traceback goes into this request's one log line
            line.level, line.error = logging.ERROR, exc
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
        pod, namespace = request.object, request.namespace or None
        # mutate() in two steps: what needed_nads() lists, fetched at once, then the decision.
        prepared = prepare(pod, namespace, self._profiles.current())
        misses = [
            key
            for key in prepared.needed()
            if self._nads.cached(*key) is None and could_exist(*key)
        ]
        fetched = await self._fetch(misses) if misses else {}

        def lookup(ns: str, name: str) -> NetworkAttachmentDefinition | None:
            key = (ns, name)
            return fetched[key] if key in fetched else self._nads.cached(ns, name)

        return prepared.decide(lookup)

    async def _fetch(self, keys: list[_Key]) -> dict[_Key, NetworkAttachmentDefinition | None]:
        """Ask the API server for all `keys` at once, each GET in a worker thread."""
        fetched: dict[_Key, NetworkAttachmentDefinition | None] = {}
        failed: list[Exception] = []

        async def one(key: _Key) -> None:
            self._metrics.nad_fetches.inc()
            try:
                fetched[key] = await anyio.to_thread.run_sync(self._nads.fetch, *key)
            except Exception as exc:  # re-raised below, outside the task group
                failed.append(exc)

        async with anyio.create_task_group() as group:
            for key in keys:
                group.start_soon(one, key)
        if failed:
            raise failed[0]
        return fetched


def _name(request: admission.Request) -> object:
    """The pod's name for the log line (any JSON: the line is JSON, and shapes come later)."""
    meta = (request.object or {}).get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return meta.get("name") or request.name or f"{meta.get('generateName') or ''}*"
