"""The serving event loop: asyncio's selector loop, with a 32 KiB TLS read buffer per connection.

Why not uvloop (which the webhook ran until the soak of issue 12): libuv, since its PR 3696
("unix: don't accept() connections in a loop", 2022; in uvloop 0.23), accepts ONE connection per
loop iteration. With the one worker saturated an iteration takes tens of milliseconds (it serves
every ready connection), so uvloop accepted about 16 connections a second (strace: one `accept4` per
~60 ms, never an EAGAIN) while the listen queue held hundreds (`ss -ltn`: up to 782 waiting): a
new client's TCP connect succeeds at once (the kernel's backlog) and its TLS handshake then waits
in that queue, past a 10 s client timeout. Neither uvloop nor libuv has a setting for it. asyncio's
loop accepts until EAGAIN (up to the listen backlog) on each readiness event: its queue stayed at
0-1 and no handshake failed. Figures: bench/RESULTS.md section 5.

Why the smaller buffer: asyncio's TLS transport (`asyncio.sslproto.SSLProtocol`, CPython 3.11)
allocates `bytearray(max_size)`, 256 KiB and zero-filled (so resident), per connection for the
socket reads that feed OpenSSL, and asks OpenSSL for decrypted data in `max_size` chunks. Measured
with one worker under hey at 64 connections plus 32 slow clients (RSS under load, idle 43 MiB):
256 KiB 101-110 MiB, 64 KiB 70 MiB, 32 KiB 55-57 MiB, 16 KiB 55 MiB; uvloop 51-58 MiB. A TLS
record holds at most 16 KiB of plaintext (plus its overhead), so 32 KiB still takes a whole record
per read, and both loops over the buffer (`buffer_updated`, `_do_read`) repeat until OpenSSL has
nothing left: a review of any size arrives whole (tests/webhook/test_serving.py sends ~1 MiB).

`_make_ssl_transport` is a private hook of asyncio's selector loop: the one place it builds the
TLS protocol for a connection, server or client. tests/webhook/test_serving.py checks over a real
TLS connection that the served connection's buffer is this size, so a Python that changes the
hook fails a test instead of silently serving with 256 KiB again.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from asyncio import selector_events, sslproto
from typing import Any

TLS_READ_BUFFER = 32 * 1024


class _TlsProtocol(sslproto.SSLProtocol):
    max_size = TLS_READ_BUFFER  # the class attribute asyncio sizes the buffer and reads by


class ServingLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose TLS connections read through 32 KiB, not 256."""

    def _make_ssl_transport(
        self,
        rawsock: socket.socket,
        protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        waiter: asyncio.Future[Any] | None = None,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        extra: dict[str, Any] | None = None,
        server: asyncio.Server | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> asyncio.Transport:
        assert waiter is not None  # asyncio passes one for every TLS connection it makes
        _no_delay(rawsock)
        tls = _TlsProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,  # type: ignore[arg-type]  # a float
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        selector_events._SelectorSocketTransport(  # type: ignore[attr-defined]
            self, rawsock, tls, extra=extra, server=server
        )
        return tls._app_transport

    def _make_socket_transport(
        self,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: asyncio.Server | None = None,
    ) -> asyncio.Transport:
        _no_delay(sock)  # plain HTTP (`--insecure-http`, the health port)
        transport: asyncio.Transport = super()._make_socket_transport(  # type: ignore[misc]
            sock, protocol, waiter, extra=extra, server=server
        )
        return transport


def _no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY on every TCP connection, whatever the listening socket's `proto` says.

    asyncio sets it only when the socket's `proto` is IPPROTO_TCP; uvicorn's `bind_socket()`
    (used for `--workers 2`) makes its listener with proto 0, which accepted sockets inherit, so
    Nagle held each response's second write (the body) for the client's delayed ACK: p50 44 ms
    at 64 connections against 14 ms with uvloop, which always sets it.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
