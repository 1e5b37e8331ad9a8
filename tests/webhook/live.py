"""Run the real server (uvicorn, real TLS) on 127.0.0.1 in a thread, and talk to it."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509

from tests.poll import poll
from webhook.server import ServeOptions, WebhookConfig


@dataclass
class Live:
    config: WebhookConfig
    server: uvicorn.Server
    port: int


@contextmanager
def running(options: ServeOptions) -> Iterator[Live]:
    config = WebhookConfig(replace(options, host="127.0.0.1", port=0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Live(config, server, port)
    finally:
        server.should_exit = True
        thread.join(15)
        config.stop_sources()


def client_context(ca: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    """Handshake and return the serial number of the certificate the server presented."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def request(
    port: int,
    ctx: ssl.SSLContext,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        conn.request(method, path, body=data, headers={"content-type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
