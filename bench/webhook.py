"""Our webhook against network-resources-injector, over TLS on loopback, NADs from one API server.

The injector is built from ../shared/peers (bench/peers.py) and run against the cluster rig the
way its deployment runs it (bench/injector.py). Ours reads the same NADs from the same API server
(`--kubeconfig`, its informer-like cache), once as the chart runs it (one worker) and once with
`--workers 2`. The same pod goes to both: we get it with the `bond=true` label, the injector with
the networks annotation our webhook would write (its input). Each answer's patch is checked
before any timing. Load: rakyll/hey (keep-alive HTTP/1.1 over TLS) at 1, 16 and 64 concurrent
connections, the servers taking turns at each level so that a burst of load on the shared
machine falls on all of them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import json
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from bench import injector, podcreate, review
from bench.peers import INJECTOR, hey, peer_binary
from bench.report import Comparison
from tests.rigs.cluster import Cluster
from tests.rigs.cluster_procs import free_port
from webhook.mutation import mutate
from webhook.nads import StaticNadSource

PEER = "network-resources-injector"
CONCURRENCY = (1, 16, 64)
READY_TIMEOUT = 90.0
PODNETINFO = "podnetinfo"  # the injector's Downward API volume (ours adds none)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""


@dataclass(frozen=True)
class Server:
    name: str
    pid: int
    port: int
    body: Path  # the review this server gets


def run(
    seconds: float, concurrency: Sequence[int] = CONCURRENCY, pods: int = 500
) -> list[Comparison]:
    pod = review.seed_pod()
    expected = review.expected_pod(pod)
    load = hey()
    binary = peer_binary(INJECTOR)
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        work = Path(tmp)
        _certificates(work)
        (work / "ours.json").write_bytes(review.body(pod))
        (work / "peer.json").write_bytes(review.body(_peer_input(pod, expected)))
        with Cluster(work / "cluster", die_with_parent=True) as cluster:
            for namespace in (review.NAMESPACE, *podcreate.NAMESPACES.values()):
                if namespace != review.NAMESPACE:
                    cluster.create_namespace(namespace)
                cluster.kubectl("-n", namespace, "apply", "-f", str(review.NADS))
            sa_dir = injector.service_account(cluster, work / "serviceaccount")
            with (
                _start_ours(work, cluster, 1) as one,
                _start_ours(work, cluster, 2) as two,
                _start_peer(work, cluster, binary, sa_dir) as peer,
            ):
                servers = (one, two, peer)
                for server in servers:
                    _check(server, work, expected)
                print(f"  every answer's patch checked; hey {len(servers)} servers in turn")
                results = _measure(load, servers, work, seconds, concurrency)
                rss = {server.name: _tree_rss_kib(server.pid) for server in servers}
                creates = _pod_creates(cluster, work, (one, peer), expected, pods) if pods else {}
    for server in servers:
        print(f"  RSS after the run, {server.name}: {rss[server.name] / 1024:.1f} MiB")
    rows: list[Comparison] = []
    for ours in (one, two):
        for conns in concurrency:
            mine, theirs = results[ours.name, conns], results[peer.name, conns]
            label = f"webhook {_short(ours.name)} c={conns}"
            rows += [
                Comparison(f"{label} req/s", mine.rps, theirs.rps, "/s", PEER, "higher", 1.0),
                Comparison(f"{label} p50", mine.p50_ms, theirs.p50_ms, "ms", PEER, "lower"),
                Comparison(f"{label} p99", mine.p99_ms, theirs.p99_ms, "ms", PEER, "lower", 1.0),
            ]
        rows.append(
            Comparison(
                f"webhook {_short(ours.name)} RSS (all processes)",
                rss[ours.name] / 1024,
                rss[peer.name] / 1024,
                "MiB",
                PEER,
                "lower",
                1.5,
            )
        )
    rows += _create_rows(creates)
    rows.append(_in_process(pod))
    return rows


def _pod_creates(
    cluster: Cluster,
    work: Path,
    servers: tuple[Server, Server],
    expected: dict[str, Any],
    count: int,
) -> dict[str, podcreate.CreateTimes]:
    """Pod creates through the API server with no webhook, ours (one worker) and the injector."""
    ours, peer = servers
    plain: dict[str, Any] = yaml.safe_load(review.SEED_POD.read_text(encoding="utf-8"))
    annotated = copy.deepcopy(plain)
    annotated["metadata"]["annotations"] = dict(expected["metadata"]["annotations"])
    targets = (
        podcreate.Target("ours", ours.port, plain, ours.pid),
        podcreate.Target("peer", peer.port, annotated, peer.pid),
    )
    print(f"  pod creates: {count} per namespace, no webhook / ours (1 worker) / injector")
    creates, apiserver = podcreate.run(cluster, targets, plain, work / "pki" / "ca.crt", count)
    for key, label in (("none", "no webhook"), ("ours", "ours"), ("peer", PEER)):
        times = creates[key]
        print(
            f"  pod create, {label:<27} p50 {times.p50_ms:6.1f} ms  p99 {times.p99_ms:6.1f} ms"
            f"  ({times.count} creates)"
        )
    for key, label in (("ours", "ours"), ("peer", PEER)):
        added = creates[key].p50_ms - creates["none"].p50_ms
        print(
            f"  {label} adds {added:.1f} ms to the create's p50 (target for ours: <= 5 ms); the"
            f" API server's call to it took {creates[key].webhook_mean_ms:.1f} ms on average"
            " (apiserver_admission_webhook_admission_duration_seconds)"
        )
        times = creates[key]
        print(
            f"    of which the HTTP round trip (rest_client_request_duration_seconds, mean)"
            f" {times.http_mean_ms:.1f} ms; its process per create: {times.cpu_ms:.2f} ms on a"
            f" core, {times.wait_ms:.2f} ms waiting for one (schedstat)"
        )
    print(
        f"  kube-apiserver per create (all three namespaces): {apiserver.cpu_ms:.2f} ms on a core,"
        f" {apiserver.wait_ms:.2f} ms waiting for one (schedstat)"
    )
    handled = _handler_ms(work / f"{ours.name.replace(' ', '_')}.log", "bench-ours")
    if handled:
        print(
            f"  ours' own log: {len(handled)} admissions in bench-ours, handled in "
            f"{statistics.median(handled):.2f} ms at the median, {statistics.mean(handled):.2f} ms"
            " on average (its `duration_ms`)"
        )
    return creates


def _handler_ms(log: Path, namespace: str) -> list[float]:
    """`duration_ms` of ours' admission log lines for one namespace (time inside the handler)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"namespace":"{namespace}"' in line:
            with contextlib.suppress(ValueError, KeyError):
                found.append(float(json.loads(line)["duration_ms"]))
    return found


def _create_rows(creates: dict[str, podcreate.CreateTimes]) -> list[Comparison]:
    if not creates:
        return []
    ours, peer, none = creates["ours"], creates["peer"], creates["none"]
    return [
        Comparison("pod create p50, via webhook", ours.p50_ms, peer.p50_ms, "ms", PEER, "lower"),
        Comparison("pod create p99, via webhook", ours.p99_ms, peer.p99_ms, "ms", PEER, "lower"),
        Comparison(
            "pod create: API server's webhook call, mean",
            ours.webhook_mean_ms,
            peer.webhook_mean_ms,
            "ms",
            PEER,
            "lower",
        ),
        Comparison(
            "pod create p50 added over no webhook",
            ours.p50_ms - none.p50_ms,
            peer.p50_ms - none.p50_ms,
            "ms",
            PEER,
            "lower",
        ),
    ]


def _short(name: str) -> str:
    return "1 worker" if name.endswith("--workers 1") else "2 workers"


def _peer_input(pod: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The injector's input: the same pod with the networks annotation ours would write."""
    given = copy.deepcopy(pod)
    given["metadata"]["annotations"] = dict(expected["metadata"]["annotations"])
    return given


def _certificates(work: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "webhook", "certs", "generate", "--out-dir", str(work / "pki"),
         "--ip", "127.0.0.1", "--dns", "localhost"],
        check=True, capture_output=True,
    )  # fmt: skip


@contextlib.contextmanager
def _process(
    name: str, argv: list[str], work: Path, port: int, *, body: Path, env: dict[str, str] | None
) -> Iterator[Server]:
    log = (work / f"{name.replace(' ', '_')}.log").open("wb")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    try:
        yield Server(name, proc.pid, port, body)
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server, SIGKILL it after 30 s, and reap it."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve_argv(work: Path, cluster: Cluster, port: int, *extra: str) -> list[str]:
    """`bond-injector serve` on 127.0.0.1:`port` with the bench's pair in work/pki, NADs from
    `cluster`, the default profiles; `extra` flags after them (the soak uses it too)."""
    pki = work / "pki"
    return [
        sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key"),
        "--kubeconfig", str(cluster.kubeconfig), "--profiles", str(review.PROFILES), *extra,
    ]  # fmt: skip


def _start_ours(
    work: Path, cluster: Cluster, workers: int
) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    argv = serve_argv(work, cluster, port, "--workers", str(workers))
    name = f"bond-injector serve --workers {workers}"
    return _process(name, argv, work, port, body=work / "ours.json", env=None)


def _start_peer(
    work: Path, cluster: Cluster, binary: Path, sa_dir: Path
) -> contextlib.AbstractContextManager[Server]:
    port, health = free_port(), free_port()
    pki = work / "pki"
    argv = injector.argv(binary, sa_dir, pki, port=port, health_port=health)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **injector.environment(cluster)}
    return _process(PEER, argv, work, port, body=work / "peer.json", env=env)


def _post(server: Server, work: Path) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(work / "pki" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        conn.request(
            "POST", "/mutate", server.body.read_bytes(), {"Content-Type": "application/json"}
        )
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _check(server: Server, work: Path, expected: dict[str, Any]) -> None:
    """Wait until the server answers with the expected pod (the NAD caches may still be filling).

    The injector's answer also adds its Downward API volume (`podnetinfo`, mounted in every
    container); that is left out of the comparison and said here.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            status, payload = _post(server, work)
        except OSError as err:
            last = f"no answer: {err}"
        else:
            if status == 200:
                mutated = _apply(json.loads(payload), server.body)
                extra = _drop_podnetinfo(mutated)
                if mutated == expected:
                    note = f" (plus its Downward API volume: {extra})" if extra else ""
                    print(f"  {server.name}: the patch gives the expected pod{note}")
                    return
                last = f"a different pod: {json.dumps(mutated)[:800]}"
            else:
                last = f"HTTP {status}: {payload[:300]!r}"
        time.sleep(0.5)
    log = (work / f"{server.name.replace(' ', '_')}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not answer as expected: {last}\nits log:\n{log}")


def _apply(review_answer: dict[str, Any], body: Path) -> dict[str, Any]:
    response = review_answer["response"]
    pod = json.loads(body.read_bytes())["request"]["object"]
    if not response.get("allowed") or "patch" not in response:
        return {"denied": response.get("status", {})}
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(pod, ops)
    return result


def _drop_podnetinfo(pod: dict[str, Any]) -> str:
    """Remove the injector's `podnetinfo` volume and mounts; say what was removed."""
    spec = pod.get("spec", {})
    removed = []
    volumes = spec.get("volumes", [])
    if any(v.get("name") == PODNETINFO for v in volumes):
        spec["volumes"] = [v for v in volumes if v.get("name") != PODNETINFO]
        removed.append("volume")
    for container in spec.get("containers", []):
        mounts = container.get("volumeMounts", [])
        if any(m.get("name") == PODNETINFO for m in mounts):
            container["volumeMounts"] = [m for m in mounts if m.get("name") != PODNETINFO]
            removed.append(f"mount in {container['name']}")
    return ", ".join(removed)


def _measure(
    load: Path, servers: Sequence[Server], work: Path, seconds: float, concurrency: Sequence[int]
) -> dict[tuple[str, int], LoadResult]:
    results: dict[tuple[str, int], LoadResult] = {}
    for conns in concurrency:
        for server in servers:
            _hey(load, server, 1.0, conns)  # warm-up: connections, caches
            result = _hey(load, server, seconds, conns)
            results[server.name, conns] = result
            print(
                f"  c={conns:<3} {server.name:<34} {result.rps:8.0f} req/s  "
                f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                f"({result.requests} requests, {result.errors} errors)",
                flush=True,
            )
            if result.errors:
                print(f"    first error: {result.first_error}")
    return results


def hey_argv(load: Path, server: Server, seconds: float, conns: int) -> list[str]:
    return [
        str(load), "-z", f"{seconds}s", "-c", str(conns), "-m", "POST",
        "-T", "application/json", "-D", str(server.body),
        f"https://127.0.0.1:{server.port}/mutate",
    ]  # fmt: skip


def _hey(load: Path, server: Server, seconds: float, conns: int) -> LoadResult:
    done = subprocess.run(
        hey_argv(load, server, seconds, conns),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    )
    return parse_hey(done.stdout)


_PERCENTILE = re.compile(r"^\s*(\d+)%+ in ([\d.]+) secs", re.MULTILINE)
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.MULTILINE)
_ERRORS = re.compile(r"^Error distribution:\n((?:\s+\[\d+\].*\n?)+)", re.MULTILINE)


def parse_hey(text: str) -> LoadResult:
    """hey's summary: req/s, the 50% and 99% latencies, status codes and errors.

    Every answer other than HTTP 200 counts as an error, as does every transport error."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    percentiles = {int(p): float(s) * 1000 for p, s in _PERCENTILE.findall(text)}
    statuses = {int(code): int(count) for code, count in _STATUS.findall(text)}
    error_lines = _ERRORS.search(text)
    transport = error_lines.group(1).strip().splitlines() if error_lines else []
    transport_count = sum(int(re.findall(r"\[(\d+)\]", line)[0]) for line in transport)
    bad = sum(count for code, count in statuses.items() if code != 200)
    slowest = re.search(r"Slowest:\s+([\d.]+) secs", text)
    if 99 not in percentiles and slowest is not None:  # hey skips 99% with few answers
        percentiles[99] = float(slowest.group(1)) * 1000
    if rps is None or 50 not in percentiles or 99 not in percentiles:
        raise RuntimeError(f"hey printed no summary:\n{text[-1500:]}")
    return LoadResult(
        requests=sum(statuses.values()) + transport_count,
        errors=bad + transport_count,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        first_error=transport[0].strip() if transport else "",
    )


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants (uvicorn's supervisor and workers, or the
    unshare/sh wrapper exec'd into the injector: one process)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


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
