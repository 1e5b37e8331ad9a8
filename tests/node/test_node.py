"""The seed guide, on a real node: kubelet, containerd, Multus, the chart as users install it.

Each test drives the node the way a user does (kubectl apply, exec, delete) and looks at the node
itself through the rig's node shell where a user would use `kubectl debug node/...`.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.poll import poll
from tests.rigs.cluster import REPO
from tests.rigs.node import NAMESPACE, NODE_NAMESPACE, RELEASE
from tests.rigs.node_plugin import BondedNode, wait_for_phase

pytestmark = pytest.mark.node

SEED_POD = REPO / "examples" / "seed-pod.yaml"
START = 900.0  # s: a pod start under TCG (sandbox, three CNI calls, the container)


@pytest.fixture
def namespace(bonded: BondedNode) -> Iterator[str]:
    name = f"node-{secrets.token_hex(3)}"
    bonded.cluster.create_namespace(name)
    yield name
    bonded.cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=600s")


def _exec(bonded: BondedNode, namespace: str, pod: str, *argv: str) -> str:
    return bonded.cluster.kubectl("-n", namespace, "exec", pod, "--", *argv).stdout


def _links(ip_a: str) -> dict[str, str]:
    """`ip a` (busybox or iproute2) -> {name: that link's whole block}."""
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=\d+: )", ip_a.strip()):
        match = re.match(r"\d+: ([^:@]+)", block)
        if match:
            blocks[match.group(1)] = block
    return blocks


def _node_state(bonded: BondedNode) -> dict[str, object]:
    """What a bonded pod could leave behind on the node: VFs, bonds, leases."""
    links = bonded.shell.run("ip -o link show").splitlines()
    leases = bonded.shell.run(
        "ls /var/lib/cni/networks/bond-net 2>/dev/null | grep -v -e '^last_reserved_ip' -e lock"
        " || true"
    ).split()
    return {
        "vfs": sorted(re.findall(r"\d+: (pf[ab]-vf\d+)[@:]", "\n".join(links))),
        "bonds": [line for line in links if " bond" in line and "master" not in line],
        "leases": leases,
    }


def test_the_chart_runs_on_the_node(bonded: BondedNode) -> None:
    """helm install made the certificates, the webhook is Ready, the plugin is installed and its
    helper answers, and helm test passes."""
    cluster = bonded.cluster
    deploy = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "deploy", "-o", "json").stdout)[
        "items"
    ]
    assert deploy and all(
        d["status"].get("readyReplicas", 0) == d["spec"]["replicas"] for d in deploy
    )
    ds = json.loads(cluster.kubectl("-n", NODE_NAMESPACE, "get", "ds", "-o", "json").stdout)[
        "items"
    ]
    assert ds and all(d["status"].get("numberReady", 0) == 1 for d in ds)
    assert bonded.shell.run("test -x /opt/cni/bin/bond && /opt/cni/bin/bond probe && echo ok")
    tested = cluster.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "10m")
    assert "Phase:          Succeeded" in tested.stdout or "Succeeded" in tested.stdout


def test_seed_pod_runs_with_bond0_as_the_guide_shows(bonded: BondedNode, namespace: str) -> None:
    before = _node_state(bonded)
    cluster = bonded.cluster
    cluster.kubectl("-n", namespace, "apply", "-f", str(SEED_POD))
    wait_for_phase(cluster, namespace, "test-pod", "Running", START)

    links = _links(_exec(bonded, namespace, "test-pod", "ip", "a"))
    assert {"lo", "eth0", "bond0", "net1", "net2"} <= set(links)
    bond0 = links["bond0"]
    assert re.search(r"<[^>]*\bUP\b[^>]*LOWER_UP", bond0), bond0
    assert re.search(r"inet 10\.56\.217\.\d+/24", bond0), bond0
    for leg in ("net1", "net2"):
        assert "master bond0" in links[leg], links[leg]
    # The two legs came from the two pools: one VF of each stand-in PF.
    origin = {
        leg: _exec(bonded, namespace, "test-pod", "cat", f"/sys/class/net/{leg}/ifalias").strip()
        for leg in ("net1", "net2")
    }
    assert origin["net1"].startswith("pfa-vf") and origin["net2"].startswith("pfb-vf"), origin

    # The bond carries traffic from the moment the container starts.
    _exec(bonded, namespace, "test-pod", "ping", "-c", "1", "-W", "5", bonded.peer)

    cluster.kubectl("-n", namespace, "delete", "pod", "test-pod", "--wait=true", "--timeout=600s")
    poll(
        lambda: _node_state(bonded) == before,
        timeout=120,
        what="the node back to its state before the pod (VFs home, no bond, no lease)",
        interval=2,
    )


def test_ping_goes_on_while_the_active_legs_switch_port_is_down(
    bonded: BondedNode, namespace: str
) -> None:
    cluster = bonded.cluster
    cluster.kubectl("-n", namespace, "apply", "-f", str(SEED_POD))
    wait_for_phase(cluster, namespace, "test-pod", "Running", START)
    active = _exec(
        bonded, namespace, "test-pod", "cat", "/sys/class/net/bond0/bonding/active_slave"
    ).strip()
    vf = _exec(bonded, namespace, "test-pod", "cat", f"/sys/class/net/{active}/ifalias").strip()
    port = re.sub(r"-vf(\d+)$", r"-p\1", vf)  # its switch port in the fabric (node_vm.sh)

    # A steady stream through the bond while the port goes down: 60 pings, 0.2 s apart.
    pinger = subprocess.Popen(
        [
            *_kubectl_argv(bonded),
            *("-n", namespace, "exec", "test-pod", "--"),
            *("ping", "-c", "60", "-i", "0.2", "-W", "2", bonded.peer),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert pinger.stdout is not None
    stdout = pinger.stdout
    reader = threading.Thread(target=lambda: output.append(stdout.read()))
    reader.start()
    try:
        bonded.shell.run(f"ip netns exec fabric ip link set {port} down")
        poll(
            lambda: (
                _exec(
                    bonded,
                    namespace,
                    "test-pod",
                    "cat",
                    "/sys/class/net/bond0/bonding/active_slave",
                ).strip()
                not in ("", active)
            ),
            timeout=60,
            what="the bond to fail over to the other leg",
        )
        pinger.wait(timeout=300)
    finally:
        bonded.shell.run(f"ip netns exec fabric ip link set {port} up", check=False)
        reader.join(timeout=30)
        stdout.close()
        pinger.wait(timeout=30)
    summary = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output[0])
    assert summary, output[0]
    sent, received = int(summary.group(1)), int(summary.group(2))
    assert sent == 60
    # The stream goes on: well over half the pings answered, and the last ones (after the
    # failover) all answered.
    assert received >= 45, output[0]
    assert not re.search(r"seq=(5[5-9]) .*timeout", output[0])


def _bond_healthy(bonded: BondedNode, namespace: str, pod: str) -> dict[str, Any] | None:
    listed = bonded.cluster.kubectl("-n", namespace, "get", "pod", pod, "-o", "json").stdout
    got = json.loads(listed)
    for condition in got["status"].get("conditions", []):
        if condition["type"] == "bond-injector.io/BondHealthy":
            return dict(condition)
    return None


def _agent_events(bonded: BondedNode, namespace: str, pod: str) -> list[str]:
    listed = bonded.cluster.kubectl(
        "-n", namespace, "get", "events", "-o", "json",
        "--field-selector", f"involvedObject.name={pod},source=bond-injector-agent",
    ).stdout  # fmt: skip
    return [e["reason"] for e in json.loads(listed)["items"]]


def test_the_agent_on_the_node_tells_the_pod_its_bond_lost_a_leg(
    bonded: BondedNode, namespace: str
) -> None:
    """The chart's agent, beside the helper: BondHealthy True, False with a leg's switch port
    down (with Events naming it), True again when it comes back."""
    cluster = bonded.cluster
    cluster.kubectl("-n", namespace, "apply", "-f", str(SEED_POD))
    wait_for_phase(cluster, namespace, "test-pod", "Running", START)

    def status() -> str | None:
        found = _bond_healthy(bonded, namespace, "test-pod")
        return None if found is None else str(found["status"])

    poll(lambda: status() == "True", timeout=300, what="BondHealthy=True from the agent")
    leg = _exec(bonded, namespace, "test-pod", "cat", "/sys/class/net/net2/ifalias").strip()
    port = re.sub(r"-vf(\d+)$", r"-p\1", leg)
    try:
        bonded.shell.run(f"ip netns exec fabric ip link set {port} down")
        poll(lambda: status() == "False", timeout=120, what="BondHealthy=False, a leg down")
        condition = _bond_healthy(bonded, namespace, "test-pod")
        assert condition is not None and "net2" in condition["message"], condition
        poll(  # the agent patches the condition first, then creates the Events
            lambda: "BondDegraded" in _agent_events(bonded, namespace, "test-pod"),
            timeout=60,
            what="the BondDegraded Event",
        )
    finally:
        bonded.shell.run(f"ip netns exec fabric ip link set {port} up", check=False)
    poll(lambda: status() == "True", timeout=120, what="BondHealthy=True, the leg back")
    poll(
        lambda: "BondRecovered" in _agent_events(bonded, namespace, "test-pod"),
        timeout=60,
        what="the BondRecovered Event",
    )


def _kubectl_argv(bonded: BondedNode) -> list[str]:
    return [str(bonded.cluster.binaries["kubectl"]), "--kubeconfig", str(bonded.cluster.kubeconfig)]


def _deployment(name: str, replicas: int, *, labelled: bool = True) -> str:
    labels = {"app": name, **({"bond": "true"} if labelled else {})}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "app",
                                "image": "docker.io/library/alpine:latest",
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["sleep", "100000"],
                            }
                        ],
                    },
                },
            },
        }
    )


def _pods(bonded: BondedNode, namespace: str, app: str) -> list[dict[str, Any]]:
    listed = bonded.cluster.kubectl(
        "-n", namespace, "get", "pods", "-l", f"app={app}", "-o", "json"
    ).stdout
    return list(json.loads(listed)["items"])


def test_three_replicas_on_distinct_leg_pairs_and_a_fourth_pending(
    bonded: BondedNode, namespace: str
) -> None:
    cluster = bonded.cluster
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=_deployment("bonded", 3))
    cluster.kubectl(
        "-n", namespace, "rollout", "status", "deploy/bonded", f"--timeout={int(START * 2)}s"
    )
    pods = _pods(bonded, namespace, "bonded")
    assert len(pods) == 3
    pairs = set()
    for pod in pods:
        name = str(pod["metadata"]["name"])
        pair = tuple(
            _exec(bonded, namespace, name, "cat", f"/sys/class/net/{leg}/ifalias").strip()
            for leg in ("net1", "net2")
        )
        assert pair[0].startswith("pfa-vf") and pair[1].startswith("pfb-vf"), pair
        pairs.add(pair)
    assert len({p[0] for p in pairs}) == 3 and len({p[1] for p in pairs}) == 3, pairs

    cluster.kubectl("-n", namespace, "scale", "deploy/bonded", "--replicas=4")

    def fourth_unschedulable() -> str:
        for pod in _pods(bonded, namespace, "bonded"):
            for cond in pod.get("status", {}).get("conditions", []):
                if cond.get("reason") == "Unschedulable":
                    return str(cond.get("message", ""))
        return ""

    poll(fourth_unschedulable, timeout=120, what="the fourth replica Unschedulable")
    message = fourth_unschedulable()
    assert "Insufficient intel.com/sriov_pf_a" in message, message
    assert "Insufficient intel.com/sriov_pf_b" in message, message


def test_an_unlabelled_pod_starts_with_no_bond(bonded: BondedNode, namespace: str) -> None:
    cluster = bonded.cluster
    cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", input=_deployment("plain", 1, labelled=False)
    )
    cluster.kubectl(
        "-n", namespace, "rollout", "status", "deploy/plain", f"--timeout={int(START)}s"
    )
    (pod,) = _pods(bonded, namespace, "plain")
    name = str(pod["metadata"]["name"])
    annotations = pod["metadata"].get("annotations", {})
    assert "k8s.v1.cni.cncf.io/networks" not in annotations
    links = _links(_exec(bonded, namespace, name, "ip", "a"))
    assert set(links) == {"lo", "eth0"}, sorted(links)
