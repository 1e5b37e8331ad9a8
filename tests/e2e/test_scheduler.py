"""Issue 5, item 5: the scheduler's proof that a bonded pod gets one VF from each NIC.

Two fake Nodes advertise VF pools in their status, as the SR-IOV device plugin would: node A has
both PF pools, node B only pool A. The webhook turns a label into one request of each pool, and
the real kube-scheduler does the rest: the pod goes to A, never to B, and once A's pool B is used
up further bonded pods stay Pending as "Insufficient <pool B>".
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import POOL_A, POOL_B, SCHED_NAMESPACE, BondEnv, labelled_pod
from tests.poll import poll

pytestmark = pytest.mark.cluster


def _nad(name: str, config: dict[str, object], pool: str | None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": SCHED_NAMESPACE}
    if pool:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": pool}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": name, **config})},
    }


@pytest.fixture(scope="module")
def nodes(bond_env: BondEnv) -> Iterator[tuple[str, str]]:
    cluster = bond_env.cluster
    if cluster.kubectl("get", "namespace", SCHED_NAMESPACE, check=False).returncode != 0:
        cluster.create_namespace(SCHED_NAMESPACE)
    nads = [
        _nad("sched-pf-a", {"type": "sriov"}, POOL_A),
        _nad("sched-pf-b", {"type": "sriov"}, POOL_B),
        _nad(
            "sched-bond",
            {
                "type": "bond",
                "mode": "active-backup",
                "failOverMac": 1,
                "linksInContainer": True,
                "links": [{"name": "net1"}, {"name": "net2"}],
            },
            None,
        ),
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": nads})
    )
    suffix = secrets.token_hex(3)
    node_a, node_b = f"sched-a-{suffix}", f"sched-b-{suffix}"
    # A has one VF left in pool B; B has plenty of pool A and no pool B at all.
    cluster.add_node(node_a, allocatable={POOL_A: "4", POOL_B: "1"})
    cluster.add_node(node_b, allocatable={POOL_A: "8"})
    yield node_a, node_b
    cluster.kubectl("delete", "namespace", SCHED_NAMESPACE, "--wait=false", check=False)
    cluster.kubectl("delete", "node", node_a, node_b, "--wait=false", check=False)


def _pod(env: BondEnv, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = env.get(SCHED_NAMESPACE, "pod", name)
    return pod


def _scheduled(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition["type"] == "PodScheduled":
            return dict(condition)
    return None


def test_a_bonded_pod_lands_on_the_node_with_both_nics_and_then_pool_b_runs_out(
    bond_env: BondEnv, nodes: tuple[str, str]
) -> None:
    node_a, node_b = nodes
    profile = {"bond-injector.io/profile": "sched"}
    bond_env.create(SCHED_NAMESPACE, labelled_pod("first", **profile))
    first = _pod(bond_env, "first")
    wanted = {POOL_A: "1", POOL_B: "1"}
    assert first["spec"]["containers"][0]["resources"] == {"requests": wanted, "limits": wanted}

    poll(lambda: _pod(bond_env, "first")["spec"].get("nodeName"), 60, "the first pod's binding")
    assert _pod(bond_env, "first")["spec"]["nodeName"] == node_a

    bond_env.create(SCHED_NAMESPACE, labelled_pod("second", **profile))

    def unschedulable() -> bool:
        condition = _scheduled(_pod(bond_env, "second"))
        return bool(condition and condition.get("reason") == "Unschedulable")

    poll(unschedulable, 60, "the scheduler to give up on the second pod")
    second = _pod(bond_env, "second")
    assert "nodeName" not in second["spec"]
    assert second["status"]["phase"] == "Pending"
    message = str(_scheduled(second)["message"])  # type: ignore[index]
    # Node A is short of pool B (its one VF is taken) and node B has none of it.
    assert f"Insufficient {POOL_B}" in message
    assert node_b not in json.dumps(second["spec"])
