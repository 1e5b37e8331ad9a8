"""Our webhook against a Go net/http stand-in for network-resources-injector, over TLS on loopback.

The real injector cannot be built here (the Go module proxy answers 403 for
github.com/k8snetworkplumbingwg/network-resources-injector); bench/go/mutator does its hot path
for the same pod. Both get the same AdmissionReview from bench/go/load (64 keep-alive HTTP/1.1
connections) for the same time, one server at a time.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch

from bench import review
from bench.gobuild import go_binary
from bench.report import Comparison
from tests.rigs.cluster_procs import free_port
from webhook.mutation import mutate
from webhook.nads import StaticNadSource

PEER = "Go net/http stand-in (bench/go/mutator)"
WORKERS = 2
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""


@dataclass(frozen=True)
class Server:
    name: str
    pid: int
    url: str


def run(seconds: float, connections: int) -> list[Comparison]:
    pod = review.seed_pod()
    body = review.body(pod)
    expected = review.expected_pod(pod)
    load = go_binary("load")
    mutator = go_binary("mutator")
    rows: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        work = Path(tmp)
        _certificates(work)
        (work / "review.json").write_bytes(body)
        (work / "peer.json").write_text(json.dumps(review.peer_config(pod)))
        results: dict[str, tuple[LoadResult, list[int]]] = {}
        for name, start in (("ours", _start_ours), ("peer", _start_peer(mutator))):
            with start(work) as server:
                _check(server, work, body, expected)
                _load(load, server, work, 1.0, connections)  # warm-up: connections, caches
                result = _load(load, server, work, seconds, connections)
                results[name] = (result, _rss_kib(server))
                _print_load(server, result, results[name][1], _vm_rss(server.pid))
        ours, ours_rss = results["ours"]
        peer, peer_rss = results["peer"]
        rows += [
            Comparison("webhook throughput (req/s)", ours.rps, peer.rps, "/s", PEER, "higher"),
            Comparison("webhook p50 latency", ours.p50_ms, peer.p50_ms, "ms", PEER, "lower"),
            Comparison("webhook p99 latency", ours.p99_ms, peer.p99_ms, "ms", PEER, "lower"),
            Comparison(
                "webhook RSS per worker (ours) / process (Go)",
                max(ours_rss) / 1024,
                sum(peer_rss) / 1024,
                "MiB",
                PEER,
                "lower",
            ),
        ]
    rows.append(_in_process(pod))
    return rows


def _certificates(work: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "generate", "--out-dir", str(work / "pki"),
         "--ip", "127.0.0.1", "--dns", "localhost"],
        check=True, capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def _process(name: str, argv: list[str], work: Path, port: int) -> Iterator[Server]:
    log = (work / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield Server(name, proc.pid, f"https://127.0.0.1:{port}/mutate")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _start_ours(work: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    pki = work / "pki"
    argv = [
        sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key"),
        "--nads", str(review.NADS), "--profiles", str(review.PROFILES), "--workers", str(WORKERS),
    ]  # fmt: skip
    return _process(f"bond-injector serve --workers {WORKERS}", argv, work, port)


def _start_peer(binary: Path) -> Callable[[Path], contextlib.AbstractContextManager[Server]]:
    def start(work: Path) -> contextlib.AbstractContextManager[Server]:
        port = free_port()
        pki = work / "pki"
        argv = [
            str(binary), "-addr", f"127.0.0.1:{port}", "-cert", str(pki / "tls.crt"),
            "-key", str(pki / "tls.key"), "-config", str(work / "peer.json"),
        ]  # fmt: skip
        return _process("Go stand-in", argv, work, port)

    return start


def _check(server: Server, work: Path, body: bytes, expected: dict[str, Any]) -> None:
    """Wait until the server answers, and check it turns the pod into what ours does."""
    context = ssl.create_default_context(cafile=str(work / "pki" / "ca.crt"))
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        try:
            conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            payload = answer.read()
            break
        except OSError:
            if time.monotonic() > deadline:
                log = (work / f"{server.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"{server.name} did not answer in {READY_TIMEOUT:.0f} s:\n{log}"
                ) from None
            time.sleep(0.2)
        finally:
            conn.close()
    if answer.status != 200:
        raise RuntimeError(f"{server.name}: HTTP {answer.status}: {payload[:500]!r}")
    response = json.loads(payload)["response"]
    ops = json.loads(base64.b64decode(response["patch"]))
    pod = json.loads(body)["request"]["object"]
    if jsonpatch.apply_patch(pod, ops) != expected:
        raise RuntimeError(f"{server.name} mutates the seed pod differently: {ops}")


def _load(binary: Path, server: Server, work: Path, seconds: float, conns: int) -> LoadResult:
    argv = [
        str(binary), "-url", server.url, "-body", str(work / "review.json"),
        "-cacert", str(work / "pki" / "ca.crt"), "-c", str(conns), "-z", f"{seconds}s",
        "-n", "1000000",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    result = LoadResult(**json.loads(done.stdout))
    if result.errors:
        print(f"  {server.name}: {result.errors} failed requests, first: {result.first_error}")
    return result


def _rss_kib(server: Server) -> list[int]:
    """VmRSS of the serving processes: uvicorn's workers (not the supervisor), or the Go server."""
    children = _children(server.pid)
    workers = [pid for pid in children if b"resource_tracker" not in _cmdline(pid)]
    return [_vm_rss(pid) for pid in (workers or [server.pid])]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _print_load(server: Server, result: LoadResult, rss: list[int], leader: int) -> None:
    mib = ", ".join(f"{kib / 1024:.1f}" for kib in rss)
    print(
        f"  {server.name:<34} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.1f} ms  "
        f"p99 {result.p99_ms:6.1f} ms  ({result.requests} in {result.seconds:.1f} s)  "
        f"RSS MiB: serving [{mib}], process started {leader / 1024:.1f}"
    )


def _in_process(pod: dict[str, Any]) -> Comparison:
    """One mutation (subtree diff) against a deep copy plus a full jsonpatch diff of the pod."""
    profiles, lookup = review.profiles(), StaticNadSource(review.nads()).cached
    ops = mutate(pod, review.NAMESPACE, profiles, lookup).patch

    def ours() -> None:
        mutate(pod, review.NAMESPACE, profiles, lookup)

    edited = jsonpatch.apply_patch(pod, ops)
    annotations = edited["metadata"]["annotations"]
    resources = edited["spec"]["containers"][0]["resources"]

    def full_diff() -> None:
        # Only the copy, two plain edits and the diff: none of the decision ours includes.
        mutated = copy.deepcopy(pod)
        mutated["metadata"]["annotations"] = dict(annotations)
        mutated["spec"]["containers"][0]["resources"] = copy.deepcopy(resources)
        jsonpatch.make_patch(pod, mutated)

    return Comparison(
        "in-process: mutate() vs deepcopy+jsonpatch diff",
        _best_us(ours),
        _best_us(full_diff),
        "us",
        "deepcopy + make_patch of the pod",
        "lower",
    )


def _best_us(fn: Callable[[], None], loops: int = 2000, repeats: int = 5) -> float:
    """The best of `repeats` means over `loops` calls, in microseconds (least disturbed by load)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - started) / loops)
    return best * 1e6
