"""Node tier plugin: one real node (tests/rigs/node.py) for the whole run, with the chart installed
as a user installs it, as the `node` and `bonded` fixtures.

The node starts on first use and stops at session end. With BOND_INJECTOR_NODE=reuse a node
already started by `make node-up` is used and left running. Missing parts fail the tests with the
make target that builds them; nothing here skips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import pytest

from tests.poll import poll
from tests.rigs.cluster import Cluster, ClusterError
from tests.rigs.node import NAMESPACE, NODE_NAME, PEER, RELEASE, Node, install_chart

REUSE_ENV = "BOND_INJECTOR_NODE"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the `node` fixture is in the node tier, marked or not."""
    for item in items:
        if "node" in getattr(item, "fixturenames", ()) and item.get_closest_marker("node") is None:
            item.add_marker(pytest.mark.node)


def _fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


@dataclass(frozen=True)
class Shell:
    """Commands on the node itself, through the rig's privileged host pod (what
    `kubectl debug node/...` gives an operator): the node's namespaces and its root at /host."""

    cluster: Cluster

    def run(self, script: str, *, check: bool = True) -> str:
        result = self.cluster.kubectl(
            "-n", "kube-system", "exec", "node-shell", "--", "chroot", "/host", "sh", "-c", script,
            check=check,
        )  # fmt: skip
        return result.stdout


@dataclass(frozen=True)
class BondedNode:
    cluster: Cluster
    shell: Shell
    peer: str  # the peer host's address behind both stand-in PF switches
    node_name: str


_NODE_SHELL = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "node-shell", "namespace": "kube-system"},
    "spec": {
        "nodeName": NODE_NAME,
        "hostNetwork": True,
        "hostPID": True,
        "containers": [
            {
                "name": "shell",
                "image": "docker.io/library/alpine:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "100000"],
                "securityContext": {"privileged": True},
                "volumeMounts": [{"name": "host", "mountPath": "/host"}],
            }
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "tolerations": [{"operator": "Exists"}],
    },
}


@pytest.fixture(scope="session")
def node() -> Iterator[Cluster]:
    """The running node (control plane, kubelet, containerd, Multus) for the whole session."""
    problem: str | None = None
    rig = Node()
    reuse = os.environ.get(REUSE_ENV) == "reuse"
    try:
        cluster = rig.cluster() if reuse else rig.up()
    except ClusterError as err:
        problem = f"the node rig did not start: {err}"
    if problem is not None:
        _fail(problem)
    try:
        yield cluster
    finally:
        if not reuse:
            rig.down()


@pytest.fixture(scope="session")
def bonded(node: Cluster) -> BondedNode:
    """The node with the chart installed and a shell on the node."""
    if node.helm("status", RELEASE, "-n", NAMESPACE, check=False).returncode != 0:
        install_chart(node)
    node.kubectl("apply", "-f", "-", input=json.dumps(_NODE_SHELL))
    node.kubectl(
        "-n", "kube-system", "wait", "--for=condition=Ready", "pod/node-shell", "--timeout=600s"
    )
    return BondedNode(cluster=node, shell=Shell(node), peer=PEER, node_name=NODE_NAME)


def wait_for_phase(cluster: Cluster, namespace: str, pod: str, phase: str, timeout: float) -> None:
    def reached() -> bool:
        got = cluster.kubectl(
            "-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.phase}", check=False
        ).stdout
        if got == "Failed":
            raise AssertionError(f"pod {namespace}/{pod} Failed")
        return got == phase

    poll(reached, timeout=timeout, what=f"pod {namespace}/{pod} {phase}", interval=1)
