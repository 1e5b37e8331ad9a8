"""The serving layer over real TLS: the event loop's TLS buffer and the request-header deadline."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import socket
import ssl
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import jsonpatch
import pytest
import uvicorn

from tests.poll import poll
from tests.webhook.builders import EXAMPLES, expected, pod, vfs
from tests.webhook.live import Live, client_context, request, running
from tests.webhook.pki import CA, secret_volume_swap
from tests.webhook.reviews import decoded_patch, review
from tests.webhook.test_app import OURS
from webhook.app import Settings
from webhook.eventloop import TLS_READ_BUFFER, ServingLoop
from webhook.server import ServeOptions, WebhookConfig
from webhook.tls import TlsFiles, build_context

HEADER_TIMEOUT = 0.5  # seconds: short, so the slow clients below are closed soon
JSON = {"Content-Type": "application/json"}
PARTIAL_HEADER = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n"


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TlsFiles, ssl.SSLContext]:
    """A serving pair, and a client context that trusts its CA."""
    ca = CA("webhook-ca")
    mount = tmp_path / "tls"
    mount.mkdir()
    secret_volume_swap(mount, ca.issue("bond-injector.webhook.svc"), 1)
    files = TlsFiles(mount / "tls.crt", mount / "tls.key")
    return files, client_context(ca.write(tmp_path / "ca.crt"))


@pytest.fixture
def served(pki: tuple[TlsFiles, ssl.SSLContext]) -> Iterator[tuple[Live, ssl.SSLContext]]:
    files, ctx = pki
    options = ServeOptions(
        settings=Settings(profiles=EXAMPLES / "profiles.yaml"),
        tls=files,
        nads_file=EXAMPLES / "nads.yaml",
        header_timeout=HEADER_TIMEOUT,
    )
    with running(options) as live:
        yield live, ctx


def _connect(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _closed_by_server(sock: ssl.SSLSocket) -> bool:
    """True once the server has closed the connection (a trickled byte keeps it honest)."""
    try:
        sock.sendall(b"X")
        sock.settimeout(0.05)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset, broken pipe, or TLS EOF without close_notify: closed all the same
        return True


def _served(live: Live, ctx: ssl.SSLContext) -> bool:
    p = pod()
    status, body = request(live.port, ctx, "POST", "/mutate", review(p))
    assert status == 200
    assert jsonpatch.apply_patch(p, decoded_patch(json.loads(body)["response"])) == expected(
        p, OURS, vfs()
    )
    return True


def test_a_review_of_a_mebibyte_arrives_whole(served: tuple[Live, ssl.SSLContext]) -> None:
    """Far more than one TLS record and one read buffer: the handler still gets every byte."""
    live, ctx = served
    p = pod()
    p["spec"]["containers"][0]["env"] = [
        {"name": f"VAR_{i}", "value": f"{i:04d}" + "x" * 500} for i in range(2000)
    ]
    body = json.dumps(review(p)).encode()
    assert len(body) > 1024 * 1024 > 30 * TLS_READ_BUFFER
    status, answer = request(live.port, ctx, "POST", "/mutate", body)
    assert status == 200
    response = json.loads(answer)["response"]
    assert jsonpatch.apply_patch(p, decoded_patch(response)) == expected(p, OURS, vfs())


def test_each_open_connection_costs_the_small_buffer_not_asyncios(
    served: tuple[Live, ssl.SSLContext],
) -> None:
    """Guards the webhook's memory under many connections (webhook/eventloop.py): each open TLS
    connection holds about 32 KiB, not asyncio's 256 KiB buffer. Measured as a user would see
    it, the memory the process allocates per connection held open, not through asyncio's
    private attributes (the server runs in this process, so tracemalloc sees its allocations)."""
    live, ctx = served
    count = 16

    def open_connections() -> list[http.client.HTTPSConnection]:
        opened = []
        for _ in range(count):
            conn = http.client.HTTPSConnection("localhost", live.port, context=ctx, timeout=10)
            conn.request("POST", "/mutate", json.dumps(review(pod())).encode(), JSON)
            answer = conn.getresponse()
            assert (answer.status, bool(answer.read())) == (200, True)
            opened.append(conn)  # kept alive: the server holds its side open
        return opened

    for conn in open_connections():  # warm up: first-use allocations are not per connection
        conn.close()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = open_connections()
        gc.collect()
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    for conn in held:
        conn.close()
    # ~48 KiB measured (the 32 KiB buffer, uvicorn's protocol, both ends' objects); asyncio's
    # own buffer alone would be 256 KiB a connection.
    assert TLS_READ_BUFFER < per_connection < 128 * 1024, f"{per_connection / 1024:.0f} KiB"


def _plain_listener() -> socket.socket:
    """A listener made with proto 0, as `socket.socket()` and older uvicorns' `bind_socket()` make
    it: asyncio sets TCP_NODELAY only on accepted sockets whose listener says proto 6."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _uvicorn_listener() -> socket.socket:
    """The listener `--workers 2` really serves on, whatever its proto is in this uvicorn."""
    return uvicorn.Config("webhook.app:create_app", host="127.0.0.1", port=0).bind_socket()


@pytest.mark.parametrize("make_listener", [_plain_listener, _uvicorn_listener])
def test_connections_accepted_for_workers_send_without_delay(
    pki: tuple[TlsFiles, ssl.SSLContext], make_listener: Callable[[], socket.socket]
) -> None:
    """`--workers 2` hands each worker an already bound listener: every connection our loop
    accepts on it has TCP_NODELAY, or each response's body waits for a delayed ACK."""
    files, ctx = pki
    listener = make_listener()
    accepted: list[asyncio.BaseTransport] = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    async def serve_one() -> int:
        server_context = build_context(files)[0]
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Recorder, sock=listener, ssl=server_context)
        port = listener.getsockname()[1]
        client = await asyncio.to_thread(_connect, port, ctx)
        try:
            while not accepted:  # the handshake is done client side; the server's callback next
                await asyncio.sleep(0.01)
            sock = accepted[0].get_extra_info("socket")
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        finally:
            client.close()
            server.close()

    with asyncio.Runner(loop_factory=ServingLoop) as runner:
        assert runner.run(asyncio.wait_for(serve_one(), 30)) == 1


def test_a_slow_header_is_closed_while_others_are_served(
    served: tuple[Live, ssl.SSLContext],
) -> None:
    live, ctx = served
    slow = _connect(live.port, ctx)
    silent = _connect(live.port, ctx)  # handshakes, then sends nothing at all
    try:
        slow.sendall(PARTIAL_HEADER)
        # Each look trickles one more byte of header and has a normal client served meanwhile.
        poll(
            lambda: _served(live, ctx) and _closed_by_server(slow),
            timeout=30,
            what="the server to close the client that trickles its header",
        )
        poll(lambda: _closed_by_server(silent), timeout=30, what="the silent client closed")
    finally:
        slow.close()
        silent.close()


def test_the_deadline_covers_each_request_on_a_kept_alive_connection(
    served: tuple[Live, ssl.SSLContext],
) -> None:
    live, ctx = served
    conn = http.client.HTTPSConnection("localhost", live.port, context=ctx, timeout=10)
    try:
        body = json.dumps(review(pod())).encode()
        conn.request("POST", "/mutate", body, JSON)
        first = conn.getresponse()
        assert (first.status, bool(first.read())) == (200, True)
        # Idle between requests longer than the header deadline: keep-alive's (5 s) governs.
        time.sleep(HEADER_TIMEOUT * 2)
        conn.request("POST", "/mutate", body, JSON)
        answer = conn.getresponse()
        assert (answer.status, json.loads(answer.read())["response"]["allowed"]) == (200, True)
        # The next request's header trickles: the same connection is closed.
        assert isinstance(conn.sock, ssl.SSLSocket)
        conn.sock.sendall(PARTIAL_HEADER)
        sock = conn.sock
        poll(lambda: _closed_by_server(sock), timeout=30, what="the kept-alive slow header closed")
    finally:
        conn.close()


def test_the_option_reaches_uvicorn() -> None:
    options = ServeOptions(
        settings=Settings(profiles=EXAMPLES / "profiles.yaml"), nads_file=EXAMPLES / "nads.yaml"
    )
    config = WebhookConfig(replace(options, header_timeout=7.5))
    config.load()  # as each worker does
    # What our protocol reads per connection; that served connections run our protocol and loop
    # is checked above through them (slow headers closed, the small buffer), not through
    # uvicorn's Config attributes.
    assert config.header_timeout == 7.5
    assert config.loop == "webhook.eventloop:ServingLoop"
    with pytest.raises(ValueError, match="request-header timeout must be positive, got 0 s"):
        WebhookConfig(replace(options, header_timeout=0))
    limits = WebhookConfig(replace(options, request_timeout=12.0, limit_concurrency=9))
    assert (limits.request_timeout, limits.limit_concurrency) == (12.0, 9)
    with pytest.raises(ValueError, match=r"request timeout \(5 s\) covers the header too"):
        WebhookConfig(replace(options, header_timeout=10, request_timeout=5))
    with pytest.raises(ValueError, match="limit_concurrency must be at least 1, got 0"):
        WebhookConfig(replace(options, limit_concurrency=0))
