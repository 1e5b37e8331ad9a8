"""The bond agent's Kubernetes side against the real kube-apiserver: Events in `kubectl describe
pod`, the BondHealthy condition on the pod's status, the readinessGate, the chart's RBAC.

The agent's reporter is fed the bond states the kernel test (test_agent_kernel.py) produces for
real: healthy, failed over and degraded, all legs lost, recovered; it reports through its real
API client with a real service account token bound to the chart's own ClusterRole. The cluster rig
has no kubelet, so nothing computes the pod's Ready condition: what is asserted is what is real
here: the condition as stored, the gate in the spec, and the apiserver's own READINESS GATES
column (`kubectl get pod -o wide`), which counts the gates whose condition is True.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.agent import health
from cni.agent.kube import COMPONENT, KubeSink
from cni.agent.report import Reporter
from cni.core import records
from tests.chart.render import CHART, one, render
from tests.rigs.cluster import Cluster

pytestmark = pytest.mark.cluster

GATE = health.CONDITION


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"agent-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def agent_token(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A token of a ServiceAccount bound to the chart's agent ClusterRole, and nothing else."""
    objects = render(CHART / "ci" / "agent-values.yaml")
    role = one(objects, "ClusterRole", "-agent")
    binding = one(objects, "ClusterRoleBinding", "-agent")
    name = f"bond-agent-test-{namespace}"
    role["metadata"]["name"] = binding["metadata"]["name"] = binding["roleRef"]["name"] = name
    binding["subjects"] = [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}]
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "agent")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [role, binding]}),
    )
    token = cluster.kubectl("-n", namespace, "create", "token", "agent").stdout.strip()
    path = tmp_path / "token"
    path.write_text(token)
    yield path
    cluster.kubectl("delete", "clusterrole,clusterrolebinding", name, "--wait=false")


def _pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": "node-a",  # as if scheduled: no scheduler events in the way
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            "readinessGates": [{"conditionType": GATE}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    got: dict[str, Any] = json.loads(
        cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
    )
    return got


def _record(namespace: str, pod: str, uid: str) -> records.Attachment:
    return records.Attachment(
        network="bondnet",
        container_id=f"c-{pod}",
        netns="/run/netns/x",
        bond="bond0",
        slaves=("net1", "net2"),
        pod_namespace=namespace,
        pod_name=pod,
        pod_uid=uid,
        monitor=records.Monitor("active-backup", 100, 0, 0, 0),
    )


def _state(active: str | None, **down: str) -> health.BondState:
    slaves = tuple(health.Slave(n, n not in down, down.get(n, "")) for n in ("net1", "net2"))
    return health.BondState("bond0", True, slaves, active)


HEALTHY = _state("net1")
FAILED_OVER = _state("net2", net1="no carrier")
ALL_DOWN = _state(None, net1="no carrier", net2="no carrier")
RECOVERED = _state("net2")


def _condition(cluster: Cluster, namespace: str, pod: str) -> dict[str, Any]:
    got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", pod, "-o", "json").stdout)
    (found,) = [c for c in got["status"].get("conditions", []) if c["type"] == GATE]
    assert got["spec"]["readinessGates"] == [{"conditionType": GATE}]
    return dict(found)


def _events(cluster: Cluster, namespace: str, pod: str) -> list[tuple[str, str, str]]:
    got = json.loads(
        cluster.kubectl(
            "-n",
            namespace,
            "get",
            "events",
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={pod}",
        ).stdout
    )
    items = sorted(
        (e for e in got["items"] if e["source"].get("component") == COMPONENT),
        key=lambda e: e["metadata"]["creationTimestamp"],
    )
    return [(e["type"], e["reason"], e["message"]) for e in items]


def _gates_column(cluster: Cluster, namespace: str, pod: str) -> str:
    out = cluster.kubectl("-n", namespace, "get", "pod", pod, "-o", "wide").stdout.splitlines()
    header, row = out[0].split(), out[1].split()
    # "READINESS GATES" is the last column, two words in the header.
    assert header[-2:] == ["READINESS", "GATES"]
    return row[-1]


def test_events_condition_and_gate_follow_the_bond(
    cluster: Cluster, namespace: str, agent_token: Path, tmp_path: Path
) -> None:
    pod = _pod(cluster, namespace, "web-0")
    record = _record(namespace, "web-0", pod["metadata"]["uid"])
    sink = KubeSink(cluster.server, str(agent_token), str(cluster.ca_file), "node-a")
    reporter = Reporter(str(tmp_path), sink)

    def feed(state: health.BondState) -> None:
        reporter.update(record.key, record, state)
        assert reporter.send_pending() is False
        assert reporter.pending() == set()

    feed(HEALTHY)
    condition = _condition(cluster, namespace, "web-0")
    assert (condition["status"], condition["reason"]) == ("True", "AllSlavesUp")
    assert condition["message"] == "bond bond0: 2 of 2 slaves up, active net1"
    assert _gates_column(cluster, namespace, "web-0") == "1/1"
    assert _events(cluster, namespace, "web-0") == []
    healthy_since = condition["lastTransitionTime"]

    feed(FAILED_OVER)
    condition = _condition(cluster, namespace, "web-0")
    assert (condition["status"], condition["reason"]) == ("False", "SlavesDown")
    assert "down net1 (no carrier)" in condition["message"]
    assert _gates_column(cluster, namespace, "web-0") == "0/1"
    # Sorted: Events made in the same second have no order the API keeps.
    assert sorted(e[:2] for e in _events(cluster, namespace, "web-0")) == [
        ("Warning", "BondDegraded"),
        ("Warning", "BondFailedOver"),
    ]

    feed(ALL_DOWN)
    assert _condition(cluster, namespace, "web-0")["reason"] == "AllSlavesDown"
    assert _gates_column(cluster, namespace, "web-0") == "0/1"

    feed(RECOVERED)
    condition = _condition(cluster, namespace, "web-0")
    assert (condition["status"], condition["reason"]) == ("True", "AllSlavesUp")
    assert condition["lastTransitionTime"] >= healthy_since
    assert _gates_column(cluster, namespace, "web-0") == "1/1"
    assert sorted(e[1] for e in _events(cluster, namespace, "web-0")) == [
        "BondDegraded",
        "BondDown",
        "BondFailedOver",
        "BondRecovered",
    ]
    described = cluster.kubectl("-n", namespace, "describe", "pod", "web-0").stdout
    assert "BondDown" in described
    assert "bond bond0 lost all legs: net1 (no carrier), net2 (no carrier)" in described
    assert "bond-injector-agent" in described  # the Events' source
    assert f"{GATE}" in described

    # A restarted agent over the same state folder, seeing the same bond: it says nothing.
    again = Reporter(
        str(tmp_path), KubeSink(cluster.server, str(agent_token), str(cluster.ca_file), "node-a")
    )
    again.update(record.key, record, RECOVERED)
    assert again.pending() == set()
    assert len(_events(cluster, namespace, "web-0")) == 4


def test_the_agent_cannot_touch_another_pod_of_the_same_name_or_read_pods(
    cluster: Cluster, namespace: str, agent_token: Path, tmp_path: Path
) -> None:
    _pod(cluster, namespace, "web-1")
    # The record is of an earlier pod web-1 (another uid): the API refuses the patch.
    stale = _record(namespace, "web-1", "00000000-0000-0000-0000-000000000000")
    reporter = Reporter(
        str(tmp_path), KubeSink(cluster.server, str(agent_token), str(cluster.ca_file), "node-a")
    )
    reporter.update(stale.key, stale, ALL_DOWN)
    assert reporter.send_pending() is False  # the pod is gone for this record: nothing to retry
    got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "web-1", "-o", "json").stdout)
    assert all(c["type"] != GATE for c in got["status"].get("conditions", []))
    assert _events(cluster, namespace, "web-1") == []

    as_agent = _as_agent(cluster, agent_token, tmp_path)
    for verb in (["get", "pods"], ["label", "pod", "web-1", "x=y"], ["delete", "pod", "web-1"]):
        denied = as_agent("-n", namespace, *verb)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), verb


def _as_agent(
    cluster: Cluster, token: Path, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """kubectl with the agent's token alone (the rig's kubeconfig would add admin certificates)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": "agent", "user": {"tokenFile": str(token)}}],
        "contexts": [{"name": "agent", "context": {"cluster": "c", "user": "agent"}}],
        "current-context": "agent",
    }
    path = tmp_path / "agent.kubeconfig"
    path.write_text(json.dumps(config))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(cluster.binaries["kubectl"]), "--kubeconfig", str(path), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    return run
