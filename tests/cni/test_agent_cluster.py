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

import http.client
import json
import secrets
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cni.agent import health
from cni.agent.kube import COMPONENT, KubeSink
from cni.agent.report import Condition, PodRef, Reporter, SinkError
from cni.core import records
from tests.chart.render import CHART, render
from tests.poll import poll
from tests.rigs.cluster import Cluster

pytestmark = pytest.mark.cluster

GATE = health.CONDITION


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"agent-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@dataclass(frozen=True)
class Agent:
    account: str  # the chart's node ServiceAccount, here in the test's namespace
    token: Path  # bound to the agent pod on node-a, as kubelet mounts it


def _identity(namespace: str) -> list[dict[str, Any]]:
    """The agent's identity as the chart renders it for a node namespace: its ServiceAccount,
    ClusterRole(Binding) and ValidatingAdmissionPolicy(Binding), named after the namespace."""
    sets = (f"fullnameOverride={namespace}", f"cniInstaller.namespace={namespace}")
    objects = render(CHART / "ci" / "agent-values.yaml", sets=sets)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", *POLICY_KINDS}
    return [
        r.obj
        for r in objects
        if r.kind in wanted
        and r.obj["metadata"]["labels"]["app.kubernetes.io/component"] in ("agent", "cni-installer")
    ]


POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _agent_pod(cluster: Cluster, namespace: str, account: str, node: str) -> str:
    """A pod of the agent's ServiceAccount on `node` (never run: no kubelet), to bind tokens to."""
    name = f"agent-{node}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node,
            "serviceAccountName": account,
            "automountServiceAccountToken": False,
            "containers": [{"name": "agent", "image": "registry.invalid/cni:1"}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
    return name


def _token(cluster: Cluster, namespace: str, account: str, path: Path, pod: str = "") -> Path:
    """A token of `account`, bound to `pod` when given (then it names the pod's node)."""
    bound = ["--bound-object-kind", "Pod", "--bound-object-name", pod] if pod else []
    token = cluster.kubectl("-n", namespace, "create", "token", account, *bound).stdout.strip()
    path.write_text(token)
    return path


@pytest.fixture
def agent(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Agent]:
    """The chart's agent identity, its policy enforced, and a token as the agent pod on node-a
    gets it. No Node objects are needed: the token names its pod's spec.nodeName either way."""
    objects = _identity(namespace)
    (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects})
    )
    token = _token(
        cluster,
        namespace,
        account,
        tmp_path / "token",
        _agent_pod(cluster, namespace, account, "node-a"),
    )
    _wait_enforced(cluster, namespace, token)
    yield Agent(account, token)
    for obj in objects:
        if obj["kind"] != "ServiceAccount":
            cluster.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--wait=false")


def _wait_enforced(cluster: Cluster, namespace: str, token: Path) -> None:
    """A new policy takes effect once the apiserver's informer has it: until a canary pod on
    another node refuses the agent's patch, the rules are not yet in force."""
    _pod(cluster, namespace, "canary", node="node-canary")
    body = {"status": {"conditions": [{"type": GATE, "status": "True"}]}}
    poll(
        lambda: _patch_status(cluster, token, namespace, "canary", body)[0] == 403,
        timeout=30,
        what="the agent's ValidatingAdmissionPolicy to be enforced",
        interval=0.2,
    )


def _patch_status(
    cluster: Cluster, token: Path, namespace: str, pod: str, body: dict[str, Any]
) -> tuple[int, str]:
    """PATCH pods/status with the token alone, as the agent does (kubectl would GET first, which
    the agent may not): the status code and the apiserver's message."""
    server = urlsplit(cluster.server)
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    conn = http.client.HTTPSConnection(server.hostname or "", server.port, context=context)
    try:
        conn.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
            json.dumps(body),
            {
                "Authorization": f"Bearer {token.read_text()}",
                "Content-Type": "application/strategic-merge-patch+json",
            },
        )
        response = conn.getresponse()
        data = json.loads(response.read())
    finally:
        conn.close()
    return response.status, str(data.get("message", "")) if response.status >= 300 else ""


def _pod(
    cluster: Cluster, namespace: str, name: str, node: str = "node-a", **metadata: Any
) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {
            "nodeName": node,  # as if scheduled: no scheduler events in the way
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
    cluster: Cluster, namespace: str, agent: Agent, tmp_path: Path
) -> None:
    pod = _pod(cluster, namespace, "web-0")
    record = _record(namespace, "web-0", pod["metadata"]["uid"])
    sink = KubeSink(cluster.server, str(agent.token), str(cluster.ca_file), "node-a")
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
        str(tmp_path), KubeSink(cluster.server, str(agent.token), str(cluster.ca_file), "node-a")
    )
    again.update(record.key, record, RECOVERED)
    assert again.pending() == set()
    assert len(_events(cluster, namespace, "web-0")) == 4


def test_the_agent_cannot_touch_another_pod_of_the_same_name_or_read_pods(
    cluster: Cluster, namespace: str, agent: Agent, tmp_path: Path
) -> None:
    _pod(cluster, namespace, "web-1")
    # The record is of an earlier pod web-1 (another uid): the API refuses the patch.
    stale = _record(namespace, "web-1", "00000000-0000-0000-0000-000000000000")
    reporter = Reporter(
        str(tmp_path), KubeSink(cluster.server, str(agent.token), str(cluster.ca_file), "node-a")
    )
    reporter.update(stale.key, stale, ALL_DOWN)
    assert reporter.send_pending() is False  # the pod is gone for this record: nothing to retry
    got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "web-1", "-o", "json").stdout)
    assert all(c["type"] != GATE for c in got["status"].get("conditions", []))
    assert _events(cluster, namespace, "web-1") == []

    as_agent = _as_agent(cluster, agent.token, tmp_path)
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


def _whoami(cluster: Cluster, token: Path, tmp_path: Path) -> dict[str, Any]:
    got = _as_agent(cluster, token, tmp_path)("auth", "whoami", "-o", "json")
    assert got.returncode == 0, got.stderr
    user: dict[str, Any] = json.loads(got.stdout)["status"]["userInfo"]
    return user


def test_the_apiserver_lets_the_agent_set_only_its_own_nodes_condition(
    cluster: Cluster, namespace: str, agent: Agent, tmp_path: Path
) -> None:
    """What root on a node could do with the agent's token, tried for real: the chart's policy
    refuses a pod of another node, any metadata and any other status; the condition passes."""
    node_name = "authentication.kubernetes.io/node-name"
    assert _whoami(cluster, agent.token, tmp_path)["extra"][node_name] == ["node-a"]
    here = _pod(cluster, namespace, "here", labels={"app": "web"})
    _pod(cluster, namespace, "there", node="node-b")
    condition = {"type": GATE, "status": "True", "reason": "AllSlavesUp", "message": "ok"}

    def patch(pod: str, body: dict[str, Any], token: Path = agent.token) -> tuple[int, str]:
        return _patch_status(cluster, token, namespace, pod, body)

    # A forged report for a pod of node-b, with node-a's token: refused, naming both nodes.
    status, message = patch("there", {"status": {"conditions": [condition]}})
    assert status == 403
    assert f"pod {namespace}/there runs on node node-b (spec.nodeName)" in message
    assert "is bound to a pod on node node-a" in message
    assert "may only report pods of its own node" in message
    # The same through the agent's own client: a SinkError carrying the apiserver's reason.
    sink = KubeSink(cluster.server, str(agent.token), str(cluster.ca_file), "node-a")
    alert = health.Signal("Warning", "BondDown", "forged")
    forged = Condition("False", "AllSlavesDown", "forged", True)
    with pytest.raises(SinkError, match="runs on node node-b") as raised:
        sink.report(PodRef(namespace, "there", ""), forged, [alert])
    assert "needs create on events" not in str(raised.value)  # not an RBAC matter
    # Node-b's own token, against node-a's pod: refused too.
    other = _token(
        cluster, namespace, agent.account, tmp_path / "token-b",
        _agent_pod(cluster, namespace, agent.account, "node-b"),
    )  # fmt: skip
    status, message = patch("here", {"status": {"conditions": [condition]}}, other)
    assert status == 403 and "bound to a pod on node node-b" in message
    # A token of the account bound to no pod names no node: refused.
    unbound = _token(cluster, namespace, agent.account, tmp_path / "token-unbound")
    status, message = patch("here", {"status": {"conditions": [condition]}}, unbound)
    assert status == 403 and f"names no node ({node_name})" in message

    # On its own node: labels, annotations, other conditions, other status fields are refused.
    forbidden: list[tuple[dict[str, Any], str]] = [
        ({"metadata": {"labels": {"app": "hijacked"}}}, "metadata.labels"),
        (
            {"metadata": {"annotations": {"k8s.v1.cni.cncf.io/networks": "other/nad"}}},
            "metadata.annotations",
        ),
        ({"metadata": {"finalizers": ["example.com/hold"]}}, "metadata.finalizers"),
        (
            {"status": {"conditions": [condition, {"type": "Ready", "status": "True"}]}},
            "other status.conditions",
        ),
        ({"status": {"podIP": "10.9.9.9", "podIPs": [{"ip": "10.9.9.9"}]}}, "status.podIP"),
        ({"status": {"phase": "Failed"}}, "status.phase"),
    ]
    for body, field in forbidden:
        status, message = patch("here", body)
        assert status == 403, body
        assert f"pod {namespace}/here" in message and field in message, message
        assert GATE in message  # and what it may do instead
    got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "here", "-o", "json").stdout)
    assert got["metadata"]["labels"] == {"app": "web"}
    assert "k8s.v1.cni.cncf.io/networks" not in got["metadata"].get("annotations", {})
    assert got["status"].get("phase") == here["status"].get("phase")
    assert all(c["type"] != GATE for c in got["status"].get("conditions", []))

    # What the agent sends (its uid precondition included): accepted.
    uid = here["metadata"]["uid"]
    assert patch("here", {"metadata": {"uid": uid}, "status": {"conditions": [condition]}}) == (
        200,
        "",
    )
    assert _condition(cluster, namespace, "here")["reason"] == "AllSlavesUp"
