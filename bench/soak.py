"""`python -m bench.soak` (`make soak`): our webhook under a bounded soak, as the chart runs it.

One worker, TLS, NADs from the cluster rig's API server. For `--seconds` (60):
- three hey streams, 64 connections in all: valid reviews (48), reviews ours must deny (8) and
  malformed bodies (8); every answer must have the status its kind gets (200, 200, 400);
- slow clients (slowloris): 32 connections that finished their TLS handshake and then send a
  request header one byte at a time; ours must close each after its header deadline, and each
  closed one is replaced at once;
- a burst of NAD changes (one NAD's resourceName flipped many times, NADs created and deleted),
  after which ours must answer with the final state;
- the serving certificate rotated with `bond-injector certs generate --rotate`, then the CA
  replaced (a new CA from `certs generate` trusted by the client next to the old one first, the
  serving pair swapped after), while a verifying client opens a new TLS connection every 50 ms:
  zero failed handshakes or requests;
- RSS sampled every 5 s.
It prints what it saw and exits non-zero when any request, handshake or check failed. No timing
is asserted anywhere: the soak checks answers and counts failures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonpatch

from bench import review
from bench.peers import hey
from bench.report import load_line
from bench.webhook import Server, hey_argv, parse_hey, serve_argv, stop
from tests.rigs.cluster import Cluster
from tests.rigs.cluster_procs import free_port

PROFILE_ANNOTATION = "bond-injector.io/profile"
RESOURCE_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
FLIPPED_POOL = "intel.com/sriov_pf_c"
SLOW_CLIENTS = 32
HEADER_TIMEOUT = 10.0  # `serve --header-timeout`, the default the chart runs


@dataclass
class Verifier:
    """A client that opens a new, verified TLS connection per request, with a CA bundle file."""

    bundle: Path
    port: int
    body: bytes
    handshakes: int = 0
    failed_handshakes: int = 0
    failed_requests: int = 0
    certificates: list[str] = field(default_factory=list)  # distinct serving certs, in order
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    handshake_ms: list[float] = field(default_factory=list)

    def once(self) -> None:
        context = ssl.create_default_context(cafile=str(self.bundle))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
        try:
            began = time.monotonic()
            phase = "TCP connect"
            try:
                raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                phase = "TLS handshake"
                conn.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                self.handshake_ms.append((time.monotonic() - began) * 1000)
            except (OSError, ssl.SSLError) as err:
                self.failed_handshakes += 1
                waited = time.monotonic() - began
                self.errors.append(f"at {self._now():.1f} s, {phase} after {waited:.1f} s: {err}")
                return
            self.handshakes += 1
            assert isinstance(conn.sock, ssl.SSLSocket)
            der = conn.sock.getpeercert(binary_form=True) or b""
            digest = hashlib.sha256(der).hexdigest()[:12]
            if not self.certificates or self.certificates[-1] != digest:
                self.certificates.append(digest)
            try:
                conn.request("POST", "/mutate", self.body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                payload = answer.read()
                if answer.status != 200 or not json.loads(payload)["response"]["allowed"]:
                    self.failed_requests += 1
                    self.errors.append(f"at {self._now():.1f} s, HTTP {answer.status}")
            except (OSError, ValueError, KeyError) as err:
                self.failed_requests += 1
                self.errors.append(f"at {self._now():.1f} s, request: {err}")
        finally:
            conn.close()

    def _now(self) -> float:
        return time.monotonic() - self.started


def _loop(stop: threading.Event, interval: float, step: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            step()
            stop.wait(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@dataclass
class SlowClients:
    """Connections that handshake, then trickle a request header, one byte per few seconds.

    Ours closes each after its header deadline (`serve --header-timeout`, 10 s); a closed one is
    replaced at once, as a slowloris attacker does, so `count` stay connected or connecting.
    """

    port: int
    count: int
    opened: int = 0
    closed_by_server: int = 0
    sockets: list[ssl.SSLSocket] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self) -> None:
        while len(self.sockets) < self.count:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock = context.wrap_socket(raw)
                sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError as err:  # counted, not fatal: the verifying client judges handshakes
                self.errors.append(f"slow client {self.opened + 1}: {err}")
                return
            self.sockets.append(sock)
            self.opened += 1

    def trickle(self) -> None:
        for sock in list(self.sockets):
            try:
                sock.sendall(b"X")
            except OSError:
                self.closed_by_server += 1
                self.sockets.remove(sock)
                sock.close()
        self.open()

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


class ApiClient:
    """Plain HTTPS to the rig's API server with the admin's certificate (fast NAD changes)."""

    def __init__(self, cluster: Cluster) -> None:
        pki = cluster.state_dir / "pki"
        self._context = ssl.create_default_context(cafile=str(cluster.ca_file))
        self._context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._port = cluster.ports["kube-apiserver"]

    def call(self, method: str, path: str, body: Any = None, content: str = "") -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", self._port, context=self._context)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, data, {"Content-Type": content or "application/json"})
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()


NADS_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions"


def _nad_burst(api: ApiClient, flips: int) -> list[str]:
    """Flip sriov-pf-a's pool `flips` times (ending on FLIPPED_POOL), create and delete extras."""
    problems = []
    for index in range(flips):
        pool = FLIPPED_POOL if index % 2 == 0 else "intel.com/sriov_pf_a"
        if index == flips - 1:
            pool = FLIPPED_POOL
        patch = {"metadata": {"annotations": {RESOURCE_ANNOTATION: pool}}}
        status = api.call("PATCH", f"{NADS_PATH}/sriov-pf-a", patch, "application/merge-patch+json")
        extra = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {
                "name": f"burst-{index}",
                "annotations": {RESOURCE_ANNOTATION: "intel.com/burst"},
            },
            "spec": {"config": '{"cniVersion": "1.0.0", "name": "burst", "type": "sriov"}'},
        }
        created = api.call("POST", NADS_PATH, extra)
        deleted = api.call("DELETE", f"{NADS_PATH}/burst-{index}") if index % 2 else 200
        if status != 200 or created != 201 or deleted != 200:
            problems.append(f"burst step {index}: patch {status}, create {created}, del {deleted}")
    return problems


def _requests_of(port: int, bundle: Path, body: bytes) -> dict[str, str]:
    """The resource requests ours answers for the valid review now."""
    context = ssl.create_default_context(cafile=str(bundle))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())["response"]
    finally:
        conn.close()
    pod = json.loads(body)["request"]["object"]
    ops = json.loads(base64.b64decode(answer["patch"]))
    mutated = jsonpatch.apply_patch(pod, ops)
    requests: dict[str, str] = mutated["spec"]["containers"][0]["resources"]["requests"]
    return requests


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _certs(out_dir: Path, *extra: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "generate", "--out-dir", str(out_dir),
         "--ip", "127.0.0.1", "--dns", "localhost", *extra],
        check=True, capture_output=True,
    )  # fmt: skip


def _replace(source: Path, target: Path) -> None:
    """Atomically replace a file (write beside it, then rename), as a Secret volume update does."""
    partial = target.with_name(f".{target.name}.new")
    shutil.copyfile(source, partial)
    partial.replace(target)


@contextlib.contextmanager
def _ours(work: Path, cluster: Cluster) -> Iterator[Server]:
    port = free_port()
    argv = serve_argv(work, cluster, port, "--header-timeout", f"{HEADER_TIMEOUT:g}")
    with (work / "ours.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield Server("ours", proc.pid, port, work / "valid.json")
        finally:
            stop(proc)


def _bodies(work: Path) -> dict[str, tuple[Path, int]]:
    """The three kinds of review and the HTTP status each must get."""
    pod = review.seed_pod()
    denied = copy.deepcopy(pod)
    denied["metadata"]["annotations"] = {PROFILE_ANNOTATION: "no-such-profile"}
    bodies = {
        "valid": (review.body(pod), 200),
        "denied": (review.body(denied), 200),
        "malformed": (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Admission', 400),
    }
    out = {}
    for name, (data, status) in bodies.items():
        (work / f"{name}.json").write_bytes(data)
        out[name] = (work / f"{name}.json", status)
    return out


def soak(seconds: float) -> int:
    load = hey()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        work = Path(tmp)
        _certs(work / "pki")
        bundle = work / "bundle.crt"
        shutil.copyfile(work / "pki" / "ca.crt", bundle)
        bodies = _bodies(work)
        with (
            Cluster(work / "cluster", die_with_parent=True) as cluster,
            _ours(work, cluster) as server,
        ):
            cluster.kubectl("-n", review.NAMESPACE, "apply", "-f", str(review.NADS))
            valid = bodies["valid"][0].read_bytes()
            verifier = Verifier(bundle, server.port, valid)
            _wait_answering(verifier)
            before = _requests_of(server.port, bundle, valid)
            print(f"  ours answers; requests before the soak: {before}")
            rss_samples = [_rss_kib(server.pid)]
            slow = SlowClients(server.port, SLOW_CLIENTS)
            slow.open()
            print(f"  {slow.opened} slow clients connected (header sent one byte per 2 s)")
            stop = threading.Event()
            threads = [
                _loop(stop, 0.05, verifier.once),
                _loop(stop, 2.0, slow.trickle),
                _loop(stop, 5.0, lambda: rss_samples.append(_rss_kib(server.pid))),
            ]
            streams = {
                name: subprocess.Popen(
                    hey_argv(load, Server(name, server.pid, server.port, path), seconds, conns),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for name, (path, _), conns in (
                    ("valid", bodies["valid"], 48),
                    ("denied", bodies["denied"], 8),
                    ("malformed", bodies["malformed"], 8),
                )
            }
            started = verifier.started = time.monotonic()
            _at(started + seconds * 0.3)
            failures += _nad_burst(ApiClient(cluster), 40)
            burst_done = time.monotonic()
            converged = _poll(
                lambda: _requests_of(server.port, bundle, valid).get(FLIPPED_POOL) == "1", 30
            )
            print(
                f"  NAD burst (40 changes of sriov-pf-a, 40 NADs created, 20 deleted) at "
                f"{burst_done - started:.0f} s; ours answers with the final pool "
                + (f"{converged:.2f} s after the burst" if converged is not None else "NEVER")
            )
            if converged is None:
                failures.append("the NAD cache did not converge on the burst's final state")
            _at(started + seconds * 0.5)
            _certs(work / "pki", "--rotate")
            print(f"  serving certificate rotated at {time.monotonic() - started:.0f} s")
            _at(started + seconds * 0.7)
            _certs(work / "staging")
            bundle.write_bytes(bundle.read_bytes() + (work / "staging" / "ca.crt").read_bytes())
            _replace(work / "staging" / "tls.key", work / "pki" / "tls.key")
            _replace(work / "staging" / "tls.crt", work / "pki" / "tls.crt")
            print(
                f"  CA replaced (both trusted by the client) at {time.monotonic() - started:.0f} s"
            )
            outputs = {
                name: proc.communicate(timeout=seconds + 120)[0] for name, proc in streams.items()
            }
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            slow.trickle()
            rss_samples.append(_rss_kib(server.pid))
            slow.close()
    for name, text in outputs.items():
        result = parse_hey(text)
        expected = bodies[name][1]
        wrong = _wrong_statuses(text, expected)
        print(
            f"  {name:<9} {result.requests:7d} requests  {result.rps:7.0f} req/s  "
            f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
            f"answers other than HTTP {expected}: {wrong}"
        )
        if wrong:
            failures.append(f"{name}: {wrong} answers other than HTTP {expected}")
    print(
        f"  verifying client: {verifier.handshakes} handshakes, {verifier.failed_handshakes} "
        f"failed; {verifier.failed_requests} failed requests; serving certificates seen in "
        f"turn: {len(verifier.certificates)}"
    )
    if verifier.handshake_ms:
        ordered = sorted(verifier.handshake_ms)
        print(
            f"  new connections (TCP + TLS handshake): median {ordered[len(ordered) // 2]:.0f} ms,"
            f" slowest {ordered[-1]:.0f} ms"
        )
    for error in verifier.errors[:5]:
        print(f"    {error}")
    if verifier.failed_handshakes or verifier.failed_requests:
        failures.append("the verifying client saw failed handshakes or requests")
    if len(verifier.certificates) < 3:
        failures.append(f"expected 3 serving certificates, saw {len(verifier.certificates)}")
    print(
        f"  slow clients: {slow.opened} opened ({SLOW_CLIENTS} at a time), "
        f"{slow.closed_by_server} closed by the server for their late header"
        + (f"; {len(slow.errors)} could not connect: {slow.errors[0]}" if slow.errors else "")
    )
    if seconds > 3 * HEADER_TIMEOUT and slow.closed_by_server < SLOW_CLIENTS:
        failures.append(
            f"only {slow.closed_by_server} slow clients closed; each of the first {SLOW_CLIENTS} "
            f"should be closed after its {HEADER_TIMEOUT:g} s header deadline"
        )
    mib = [f"{kib / 1024:.1f}" for kib in rss_samples]
    print(
        f"  RSS MiB: idle before the soak {mib[0]}; every 5 s under load {', '.join(mib[1:])}"
        f" (first under load {mib[1]}, end {mib[-1]})"
    )
    print(load_line())
    for failure in failures:
        print(f"  FAILED: {failure}")
    print("soak: " + ("passed" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


def _wrong_statuses(text: str, expected: int) -> int:
    result = parse_hey(text)
    right = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == f"[{expected}]" and parts[-1] == "responses":
            right = int(parts[1])
    return result.requests - right


def _at(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)


def _poll(check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until `check` held, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if check():
                return time.monotonic() - started
        time.sleep(0.05)
    return None


def _wait_answering(verifier: Verifier) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe = Verifier(verifier.bundle, verifier.port, verifier.body)
        probe.once()
        if not probe.failed_handshakes and not probe.failed_requests:
            return
        time.sleep(0.5)
    raise RuntimeError("ours did not answer within 90 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    print(f"command: python -m bench.soak --seconds {args.seconds:g}\n{load_line()}")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return soak(args.seconds)


if __name__ == "__main__":
    sys.exit(main())
