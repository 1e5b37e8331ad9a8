"""What a client without credentials can make the webhook hold, over real TLS (issue 21, finding 3).

The review's demonstrations, made tests: a 7 MiB `[{},{},...]` body took the server from 53 to
242 MiB, and a slow body stayed connected 19 s under a 2 s header timeout. The memory test runs
`bond-injector serve` as its own process and reads its peak RSS (VmHWM) from /proc.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster_procs import free_port
from tests.webhook.builders import EXAMPLES, pod
from tests.webhook.live import Live, client_context, request, running
from tests.webhook.pki import CA, secret_volume_swap
from tests.webhook.reviews import review
from tests.webhook.test_cli import CLI, NADS, PROFILES
from webhook.app import Settings, create_app
from webhook.nads import StaticNadSource
from webhook.server import ServeOptions
from webhook.settings import DEFAULT_MAX_BODY
from webhook.tls import TlsFiles

CHART_VALUES = Path(__file__).parents[2] / "charts" / "bond-injector" / "values.yaml"
SEVEN_MIB = 7 * 1024 * 1024


def _memory_limit_bytes() -> int:
    """The webhook container's memory limit in the chart (e.g. 256Mi)."""
    limit = yaml.safe_load(CHART_VALUES.read_text())["webhook"]["resources"]["limits"]["memory"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limit).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 2**20, "Gi": 2**30}[unit]


def _empty_objects(size: int) -> bytes:
    """`[{},{},...]` of `size` bytes or one less: the most Python objects per byte of JSON."""
    count = (size - 1) // 3
    return b"[" + b"{}," * (count - 1) + b"{}]"


def _status_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]


def _tls(port: int, ctx: ssl.SSLContext, timeout: float = 30) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _answer(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (ssl.SSLEOFError, ConnectionResetError):
        pass
    return reply


def _post_head(length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (
        f"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _send_chunked(sock: ssl.SSLSocket, body: bytes, piece: int = 256 * 1024) -> None:
    """Send `body` chunked; stop quietly when the server has answered and closed."""
    try:
        for at in range(0, len(body), piece):
            part = body[at : at + piece]
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    ctx: ssl.SSLContext


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Served]:
    """`bond-injector serve` with the defaults, as the chart runs it, in its own process."""
    ca = CA("ca")
    cert, key = ca.issue("localhost").write(tmp_path, "tls")
    ctx = client_context(ca.write(tmp_path / "ca.crt"))
    port = free_port()
    args = [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(cert),
            "--tls-key", str(key), "--profiles", PROFILES, "--nads", NADS]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        served = Served(proc, port, ctx)
        poll(lambda: _healthy(served) or proc.poll() is not None, timeout=60, what="serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield served
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _healthy(served: Served) -> bool:
    try:
        return request(served.port, served.ctx, "GET", "/healthz")[0] == 200
    except OSError:
        return False


def test_a_7_mib_body_is_refused_and_memory_stays_under_the_pods_limit(
    serve_process: Served,
) -> None:
    served = serve_process
    pid = served.proc.pid
    idle = _status_kib(pid, "VmRSS")
    seven = _empty_objects(SEVEN_MIB)

    # Declared: refused from its Content-Length, before a byte of the body is read.
    with _tls(served.port, served.ctx) as sock:
        sock.sendall(_post_head(len(seven)))
        reply = _answer(sock)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"connection: close" in reply.lower()
    assert b"--max-body-bytes (3407872)" in reply

    # Chunked: refused as soon as it passes the limit, while it streams.
    with _tls(served.port, served.ctx) as sock:
        sock.sendall(_post_head(None))
        sender = threading.Thread(target=_send_chunked, args=(sock, seven))
        sender.start()
        reply = _answer(sock)
        sender.join(30)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]

    # The largest body it does read, four at once: each is read, decoded and refused (400, not an
    # AdmissionReview) or, past the body budget, refused unread (503).
    largest = _empty_objects(DEFAULT_MAX_BODY)
    statuses: list[bytes] = []

    def post_largest() -> None:
        with _tls(served.port, served.ctx) as sock:
            sock.sendall(_post_head(len(largest)))
            with contextlib.suppress(OSError):  # refused unread: the server closed as we sent
                sock.sendall(largest)
            statuses.append(_answer(sock)[:12])

    posters = [threading.Thread(target=post_largest) for _ in range(4)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join(60)
    assert sorted(set(statuses)) <= [b"HTTP/1.1 400", b"HTTP/1.1 503"], statuses
    assert b"HTTP/1.1 400" in statuses
    assert len(statuses) == 4

    peak = _status_kib(pid, "VmHWM") * 1024
    limit = _memory_limit_bytes()
    print(f"serve RSS idle {idle / 1024:.0f} MiB, peak {peak / 2**20:.0f} MiB, limit {limit >> 20}")
    assert peak < limit, f"peak RSS {peak >> 20} MiB is not under the pod's {limit >> 20} MiB"
    # ... and it still serves.
    status, body = request(served.port, served.ctx, "POST", "/mutate", review(pod()))
    assert (status, json.loads(body)["response"]["allowed"]) == (200, True)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TlsFiles, ssl.SSLContext]:
    ca = CA("webhook-ca")
    mount = tmp_path / "tls"
    mount.mkdir()
    secret_volume_swap(mount, ca.issue("bond-injector.webhook.svc"), 1)
    return TlsFiles(mount / "tls.crt", mount / "tls.key"), client_context(
        ca.write(tmp_path / "ca.crt")
    )


def _options(files: TlsFiles, **changes: object) -> ServeOptions:
    settings = changes.pop("settings", Settings(profiles=EXAMPLES / "profiles.yaml"))
    return ServeOptions(
        settings=settings,  # type: ignore[arg-type]
        tls=files,
        nads_file=EXAMPLES / "nads.yaml",
        **changes,  # type: ignore[arg-type]
    )


def _closed(sock: ssl.SSLSocket) -> bool:
    """True once the server has closed (each look trickles one more body byte)."""
    try:
        sock.sendall(b" ")
        sock.settimeout(0.05)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_slow_body_is_closed_within_the_request_deadline(
    pki: tuple[TlsFiles, ssl.SSLContext],
) -> None:
    """The header arrives at once, the body one byte at a time: the header timer is stopped,
    the request deadline is not."""
    files, ctx = pki
    deadline = 1.5
    with running(_options(files, header_timeout=0.5, request_timeout=deadline)) as live:
        sock = _tls(live.port, ctx)
        try:
            started = time.monotonic()
            sock.sendall(_post_head(100_000))
            poll(lambda: _closed(sock), timeout=30, what="the slow body closed")
            took = time.monotonic() - started
        finally:
            sock.close()
        print(f"slow body closed after {took:.2f} s (request deadline {deadline} s)")
        assert deadline <= took < deadline + 1.0
        # A whole request in time is served on a connection of its own.
        assert request(live.port, ctx, "POST", "/mutate", review(pod()))[0] == 200


def test_the_request_deadline_restarts_for_each_request_on_a_kept_alive_connection(
    pki: tuple[TlsFiles, ssl.SSLContext],
) -> None:
    files, ctx = pki
    with running(_options(files, header_timeout=0.5, request_timeout=1.0)) as live:
        body = json.dumps(review(pod())).encode()
        conn = http.client.HTTPSConnection("localhost", live.port, context=ctx, timeout=10)
        try:
            socks = []
            for _ in range(3):  # 3 requests over more than one deadline: each gets its own
                conn.request("POST", "/mutate", body, {"content-type": "application/json"})
                answer = conn.getresponse()
                assert (answer.status, bool(answer.read())) == (200, True)
                socks.append(conn.sock)
                time.sleep(0.4)  # idle between requests: keep-alive's timeout governs that
            assert socks[0] is socks[1] is socks[2], "http.client reconnected: it was closed"
        finally:
            conn.close()


def _held_open(live: Live, ctx: ssl.SSLContext, count: int) -> list[ssl.SSLSocket]:
    socks = [_tls(live.port, ctx) for _ in range(count)]
    poll(
        lambda: len(live.server.server_state.connections) >= count,
        what=f"{count} connections accepted",
    )
    return socks


def test_requests_beyond_the_concurrency_limit_are_answered_503(
    pki: tuple[TlsFiles, ssl.SSLContext],
) -> None:
    files, ctx = pki
    with running(_options(files, limit_concurrency=3)) as live:
        idle = _held_open(live, ctx, 3)
        try:
            status, body = request(live.port, ctx, "POST", "/mutate", review(pod()))
            assert (status, json.loads(body)["error"]) == (
                503,
                "this webhook worker serves 3 connections and requests at once "
                "(--limit-concurrency) and has them all; retry shortly, or run more replicas",
            )
        finally:
            for sock in idle:
                sock.close()
        poll(
            lambda: request(live.port, ctx, "POST", "/mutate", review(pod()))[0] == 200,
            what="a request served once the others are gone",
        )


def test_bodies_past_the_workers_budget_are_refused_unread(
    pki: tuple[TlsFiles, ssl.SSLContext],
) -> None:
    """One client holds most of the budget with a body it sends slowly; a second large body is
    503 at once, naming the option; small reviews still fit beside it."""
    files, ctx = pki
    settings = Settings(
        profiles=EXAMPLES / "profiles.yaml",
        max_body_bytes=64 * 1024,
        max_inflight_body_bytes=100 * 1024,
    )
    with running(_options(files, settings=settings)) as live:
        holder = _tls(live.port, ctx)
        try:
            holder.sendall(_post_head(60_000) + b" " * 1000)
            with _tls(live.port, ctx) as second:
                second.sendall(_post_head(60_000))
                reply = _answer(second)
            assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
            assert b"--max-inflight-body-bytes (102400)" in reply
            assert request(live.port, ctx, "POST", "/mutate", review(pod()))[0] == 200
        finally:
            holder.close()
        poll(
            lambda: _large_review_served(live, ctx),
            what="the budget given back when the holder went away",
        )


def _large_review_served(live: Live, ctx: ssl.SSLContext) -> bool:
    p = pod()
    p["metadata"]["annotations"] = {"filler": "x" * 50_000}
    return request(live.port, ctx, "POST", "/mutate", review(p))[0] == 200


def test_a_budget_smaller_than_one_body_is_refused_at_start() -> None:
    settings = Settings(
        profiles=EXAMPLES / "profiles.yaml", max_body_bytes=2048, max_inflight_body_bytes=1024
    )
    with pytest.raises(ValueError, match=r"--max-inflight-body-bytes \(1024\) is less than"):
        create_app(settings, StaticNadSource([]))
