"""Deadlines for each request: its header, and the whole request (header and body), or the
connection is closed.

uvicorn (0.54) has no such setting: its only connection timer is the keep-alive one, armed after
a response and cancelled by any byte received, so a client that connects and then trickles a
header one byte at a time (slowloris) keeps its connection, a file descriptor and its buffers for
as long as it likes (the soak's 32 slow clients were never closed). This is uvicorn's httptools
protocol with one timer more:

- armed when the connection is made (after the TLS handshake, which the event loop bounds with
  its own 60 s handshake timeout) and when the first bytes of a further request arrive on a
  kept-alive connection;
- stopped when the header is complete (`on_headers_complete`): the body, the application and the
  keep-alive wait between requests are not limited by it (keep-alive keeps uvicorn's timeout);
- on expiry the connection is closed, without an answer (there is no request to answer yet).

A second timer, the request deadline, is armed at the same moments and stopped only when the
whole body is in (`on_message_complete`): a client that sends its header in time and then
trickles the body (issue 21: one stayed connected 19 s under a 2 s header timeout) is closed
when it expires. The app, waiting in `receive()`, then gets `http.disconnect` and drops what it
read. The time the app takes to answer is not limited by it.

The deadlines are `config.header_timeout` and `config.request_timeout`
(`webhook.server.set_deadlines`), read per connection.

It also applies `config.limit_concurrency` itself, as uvicorn would (a request beyond is 503)
but with at most that many connections served, and an answer that names the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import uvicorn
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from webhook.settings import DEFAULT_HEADER_TIMEOUT, DEFAULT_REQUEST_TIMEOUT

log = logging.getLogger(__name__)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request header or body is late."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout: float = getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT)
        self.request_timeout: float = getattr(config, "request_timeout", DEFAULT_REQUEST_TIMEOUT)
        self._limit, self.limit_concurrency = self.limit_concurrency, None
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        # The first bytes of a further request on a kept-alive connection start its deadline;
        # bytes of a body, or of a request already being answered, do not.
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        # uvicorn's own limit_concurrency answers a bare "Service Unavailable"; this one says
        # which limit and what to do (uvicorn's check is off: `limit_concurrency` is None here).
        limit = self._limit
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            app, self.app = self.app, _over_limit(limit)  # read by the super call only
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_request_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._stop_request_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_late)
        self._stop_request_timer()
        self._request_timer = self.loop.call_later(self.request_timeout, self._request_late)

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_late(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            log.debug("closing %s: request not complete in %g s", self.client, self.request_timeout)
            self.transport.close()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("closing %s: no request header in %g s", self.client, self.header_timeout)
            self.transport.close()


def _over_limit(limit: int) -> ASGI3Application:
    message = orjson.dumps({
        "error": f"this webhook worker serves {limit} connections and requests at once "
        "(--limit-concurrency) and has them all; retry shortly, or run more replicas",
    })  # fmt: skip

    async def answer(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(message)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": message})

    return answer
