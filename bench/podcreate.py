"""What a mutating webhook adds to a pod create, through the rig's real kube-apiserver.

Three namespaces: one no webhook sees, one whose pods go to ours, one whose pods go to
network-resources-injector (each through its own MutatingWebhookConfiguration, selected by the
namespace's name, over TLS with our CA as caBundle). N bonded pods are created in each, the three
taking turns, one create call at a time over one keep-alive connection (the admin's client
certificate), and each create call is timed from send to answer.

Where a webhook's time goes, from the API server's own metrics and the kernel's scheduler
statistics: `apiserver_admission_webhook_admission_duration_seconds` (the whole admission step for
one webhook: encoding the review, the call, decoding and applying the patch),
`rest_client_request_duration_seconds` for the webhook's host and port (the HTTP round trip as the
API server's client sees it), and, per create, the CPU time and the time spent waiting for a core
(`/proc/<pid>/task/*/schedstat`) of each webhook's process and of kube-apiserver during the
creates.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import ssl
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.rigs.cluster import Cluster

NAMESPACES = {"none": "bench-none", "ours": "bench-ours", "peer": "bench-peer"}


@dataclass(frozen=True)
class Target:
    key: str  # "ours" or "peer"
    port: int
    pod: dict[str, Any]  # what is created in its namespace
    pid: int = 0  # its server process, for CPU and run-queue time (0: not measured)


@dataclass(frozen=True)
class CreateTimes:
    p50_ms: float
    p99_ms: float
    count: int
    webhook_mean_ms: float = 0.0  # the API server's own measure of its call to the webhook
    http_mean_ms: float = 0.0  # its client's measure of the HTTP round trip to the webhook
    cpu_ms: float = 0.0  # the webhook process's CPU time per create
    wait_ms: float = 0.0  # ... and its time runnable but waiting for a core, per create


@dataclass(frozen=True)
class SchedTimes:
    """CPU time and run-queue wait of a process's threads, in milliseconds (schedstat)."""

    cpu_ms: float
    wait_ms: float

    def __sub__(self, other: SchedTimes) -> SchedTimes:
        return SchedTimes(self.cpu_ms - other.cpu_ms, self.wait_ms - other.wait_ms)


def sched_times(pid: int) -> SchedTimes:
    """Sum of /proc/<pid>/task/*/schedstat: on-CPU and waiting-on-a-runqueue nanoseconds."""
    cpu = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        cpu, wait = cpu + int(fields[0]), wait + int(fields[1])
    return SchedTimes(cpu / 1e6, wait / 1e6)


def _webhook_config(target: Target, ca_bundle: bytes) -> dict[str, Any]:
    name = f"bench-{target.key}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.bench.bond-injector.io",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{target.port}/mutate",
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": NAMESPACES[target.key]}
                },
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }
        ],
    }


def run(
    cluster: Cluster, targets: Sequence[Target], plain_pod: dict[str, Any], ca: Path, count: int
) -> tuple[dict[str, CreateTimes], SchedTimes]:
    """Create `count` pods per namespace, interleaved; the create call's p50 and p99 by key, and
    kube-apiserver's CPU and run-queue time per create (all namespaces).

    The caller has made the NAMESPACES, each holding the NADs."""
    for target in targets:
        config = _webhook_config(target, ca.read_bytes())
        cluster.kubectl("apply", "-f", "-", input=json.dumps(config))
    pods = {"none": plain_pod, **{t.key: t.pod for t in targets}}
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    pki = cluster.state_dir / "pki"
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    port = cluster.ports["kube-apiserver"]
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    times: dict[str, list[float]] = {key: [] for key in pods}
    pids = {"kube-apiserver": cluster.pids["kube-apiserver"]}
    pids.update({t.key: t.pid for t in targets if t.pid})
    try:
        for key, template in pods.items():  # one untimed warm-up create each, checked
            _check(key, _create(conn, NAMESPACES[key], template, -1)[1])
        before = {key: sched_times(pid) for key, pid in pids.items()}
        metrics_before = _get(conn, "/metrics")
        for index in range(count):
            for key, template in pods.items():
                times[key].append(_create(conn, NAMESPACES[key], template, index)[0])
        used = {key: sched_times(pid) - before[key] for key, pid in pids.items()}
        metrics = _get(conn, "/metrics")
    finally:
        conn.close()
    summaries = {key: _summary(values) for key, values in times.items()}
    for target in targets:
        name = f"bench-{target.key}.bench.bond-injector.io"
        host = f"127.0.0.1:{target.port}"
        process = used.get(target.key, SchedTimes(0.0, 0.0))
        summaries[target.key] = replace(
            summaries[target.key],
            webhook_mean_ms=_mean_ms(metrics, metrics_before, _ADMISSION, f'name="{name}"'),
            http_mean_ms=_mean_ms(metrics, metrics_before, _REST_CLIENT, f'host="{host}"'),
            cpu_ms=process.cpu_ms / count,
            wait_ms=process.wait_ms / count,
        )
    apiserver = used["kube-apiserver"]
    per_create = len(pods) * count
    return summaries, SchedTimes(apiserver.cpu_ms / per_create, apiserver.wait_ms / per_create)


def _get(conn: http.client.HTTPSConnection, path: str) -> str:
    conn.request("GET", path)
    answer = conn.getresponse()
    return answer.read().decode()


_ADMISSION = "apiserver_admission_webhook_admission_duration_seconds"
_REST_CLIENT = "rest_client_request_duration_seconds"


def _mean_ms(metrics: str, before: str, histogram: str, label: str) -> float:
    """The mean of a histogram's observations (with `label`) made between two scrapes, in ms."""
    now, then = _sum_count(metrics, histogram, label), _sum_count(before, histogram, label)
    count = now[1] - then[1]
    return 1000 * (now[0] - then[0]) / count if count else float("nan")


def _sum_count(metrics: str, histogram: str, label: str) -> tuple[float, float]:
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in metrics.splitlines():
        for suffix in totals:
            if line.startswith(f"{histogram}{suffix}{{") and label in line:
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return totals["_sum"], totals["_count"]


def _create(
    conn: http.client.HTTPSConnection, namespace: str, template: dict[str, Any], index: int
) -> tuple[float, dict[str, Any]]:
    pod = copy.deepcopy(template)
    pod["metadata"]["name"] = f"bench-{index + 1}"
    pod["metadata"].pop("namespace", None)
    body = json.dumps(pod).encode()
    path = f"/api/v1/namespaces/{namespace}/pods"
    started = time.perf_counter()
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    payload = answer.read()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status != 201:
        raise RuntimeError(f"pod create in {namespace}: HTTP {answer.status}: {payload[:500]!r}")
    created: dict[str, Any] = json.loads(payload)
    return elapsed, created


def _check(key: str, pod: dict[str, Any]) -> None:
    """The webhooks must have mutated the pod (their VF pools in the requests); none must not."""
    requests = pod["spec"]["containers"][0].get("resources", {}).get("requests", {})
    pools = sorted(name for name in requests if "sriov" in name)
    if (key == "none") == bool(pools):
        raise RuntimeError(f"pod create in {NAMESPACES[key]}: unexpected requests {requests}")


def _summary(values: list[float]) -> CreateTimes:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return CreateTimes(statistics.median(ordered), p99, len(ordered))
