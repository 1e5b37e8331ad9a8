"""What a mutating webhook adds to a pod create, through the rig's real kube-apiserver.

Three namespaces: one no webhook sees, one whose pods go to ours, one whose pods go to
network-resources-injector (each through its own MutatingWebhookConfiguration, selected by the
namespace's name, over TLS with our CA as caBundle). N bonded pods are created in each, the three
taking turns, one create call at a time over one keep-alive connection (the admin's client
certificate), and each create call is timed from send to answer.
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


@dataclass(frozen=True)
class CreateTimes:
    p50_ms: float
    p99_ms: float
    count: int
    webhook_mean_ms: float = 0.0  # the API server's own measure of its call to the webhook


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
) -> dict[str, CreateTimes]:
    """Create `count` pods per namespace, interleaved; the create call's p50 and p99 by key.

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
    try:
        for index in range(-1, count):  # -1: one untimed warm-up create each
            for key, template in pods.items():
                elapsed, created = _create(conn, NAMESPACES[key], template, index)
                if index == -1:
                    _check(key, created)
                else:
                    times[key].append(elapsed)
        metrics = _get(conn, "/metrics")
    finally:
        conn.close()
    summaries = {key: _summary(values) for key, values in times.items()}
    for target in targets:
        mean = _webhook_mean_ms(metrics, f"bench-{target.key}.bench.bond-injector.io")
        summaries[target.key] = replace(summaries[target.key], webhook_mean_ms=mean)
    return summaries


def _get(conn: http.client.HTTPSConnection, path: str) -> str:
    conn.request("GET", path)
    answer = conn.getresponse()
    return answer.read().decode()


def _webhook_mean_ms(metrics: str, webhook: str) -> float:
    """apiserver_admission_webhook_admission_duration_seconds: sum / count for one webhook."""
    totals = {"_sum": 0.0, "_count": 0.0}
    for line in metrics.splitlines():
        for suffix in totals:
            prefix = f"apiserver_admission_webhook_admission_duration_seconds{suffix}{{"
            if line.startswith(prefix) and f'name="{webhook}"' in line:
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return 1000 * totals["_sum"] / totals["_count"] if totals["_count"] else float("nan")


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
