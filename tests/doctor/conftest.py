"""A healthy bond-injector installation for `bond-injector doctor` to check, on the cluster rig.

The chart is installed as release bond-injector (the webhook served locally, url mode, as
`make dev-up` does) with its own pools and the CNI installer DaemonSet on, limited to the
package's nodes. No kubelet runs here, so two things a node would report are written as a
kubelet and the device plugin would write them (stand-ins, for want of a node): the Nodes'
allocatable pools and the installer pods' Ready condition. The device plugin's ConfigMap is the
one a user writes. Each test injects one fault and puts the object back.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster import Cluster
from tests.rigs.dev import (
    NAMESPACE,
    NODE_NAMESPACE,
    RELEASE,
    WebhookProcess,
    generate_certs,
    install_chart,
    render_profiles,
    start_webhook,
)
from webhook.cli import main as cli_main

POOL_A = "doctor.bond-injector.io/pf-a"
POOL_B = "doctor.bond-injector.io/pf-b"
NODE_LABEL = "doctor.bond-injector.io/node"
DEVICE_PLUGIN_NS = "kube-system"
VALUES: dict[str, Any] = {
    "networks": {
        "legs": {"pfA": {"resourceName": POOL_A}, "pfB": {"resourceName": POOL_B}},
    },
    "cniInstaller": {
        "image": {"repository": "localhost/bond-injector/cni"},  # never pulled: no kubelet
        # Only this package's nodes: null drops the chart's default labels.
        "nodeSelector": {
            "kubernetes.io/os": None,
            "feature.node.kubernetes.io/network-sriov.capable": None,
            NODE_LABEL: "true",
        },
    },
}


def device_plugin_config(root_a: str, root_b: str) -> dict[str, Any]:
    """The SR-IOV device plugin's config: one pool per PF, selected by the PF's PCI address."""
    prefix = POOL_A.split("/", maxsplit=1)[0]
    resources = [
        {
            "resourceName": pool.split("/")[1],
            "resourcePrefix": prefix,
            "selectors": {"drivers": ["iavf"], "rootDevices": [root]},
        }
        for pool, root in ((POOL_A, root_a), (POOL_B, root_b))
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "sriovdp-config", "namespace": DEVICE_PLUGIN_NS},
        "data": {"config.json": json.dumps({"resourceList": resources})},
    }


@dataclass
class DoctorEnv:
    cluster: Cluster
    webhook: WebhookProcess
    pods_ns: str
    node: str  # advertises both pools, runs the installer
    half_node: str  # advertises pool A only

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cluster.kubectl(*args, input=input).stdout

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def installer_pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=cni-installer"
        pods: list[dict[str, Any]] = self.get("pods", "-n", NODE_NAMESPACE, "-l", selector)["items"]
        return pods

    def set_installer_ready(self, node: str, ready: bool) -> None:
        """What the kubelet reports for the installer pod on `node` (stand-in: no kubelet)."""
        pod = next(p for p in self.installer_pods() if p["spec"].get("nodeName") == node)
        flag = "True" if ready else "False"
        status = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Initialized", "status": "True"},
                    {"type": "ContainersReady", "status": flag},
                    {
                        "type": "Ready",
                        "status": flag,
                        "reason": None if ready else "ContainersNotReady",
                    },
                ],
            }
        }
        self.kubectl(
            "-n", NODE_NAMESPACE, "patch", "pod", pod["metadata"]["name"], "--subresource=status",
            "--type=merge", "-p", json.dumps(status),
        )  # fmt: skip

    def doctor(
        self, *args: str, capsys: pytest.CaptureFixture[str]
    ) -> tuple[int, list[dict[str, Any]]]:
        """`bond-injector doctor -o json` against the rig: its exit code and its rows."""
        capsys.readouterr()
        code = cli_main(
            ["doctor", "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.pods_ns,
             "-o", "json", *args]
        )  # fmt: skip
        out = capsys.readouterr().out
        rows: list[dict[str, Any]] = json.loads(out)["rows"] if out else []
        return code, rows


def rows_of(rows: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["check"] == check]


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as read, made fit to be created again."""
    meta = obj["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    return obj


@pytest.fixture(scope="package")
def doctor_env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoctorEnv]:
    workdir = tmp_path_factory.mktemp("doctor")
    values = workdir / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    certs_dir = generate_certs(workdir / "certs")
    profiles = render_profiles(cluster, workdir / "profiles.yaml", "--values", str(values))
    webhook = start_webhook(cluster.kubeconfig, certs_dir, profiles, workdir / "webhook.log")
    suffix = secrets.token_hex(3)
    env = DoctorEnv(
        cluster, webhook, f"doctor-{suffix}", f"doctor-a-{suffix}", f"doctor-b-{suffix}"
    )
    try:
        install_chart(
            cluster, webhook.url, webhook.ca_bundle_b64, "--values", str(values),
            "--set", "cniInstaller.enabled=true",
        )  # fmt: skip
        cluster.create_namespace(env.pods_ns)
        env.apply(device_plugin_config("0000:3b:00.0", "0000:5e:00.0"))
        labels = {NODE_LABEL: "true"}
        cluster.add_node(env.node, labels=labels, allocatable={POOL_A: "4", POOL_B: "4"})
        cluster.add_node(env.half_node, labels=labels, allocatable={POOL_A: "4"})

        def bound() -> bool:
            nodes = {p["spec"].get("nodeName") for p in env.installer_pods()}
            return {env.node, env.half_node} <= nodes

        poll(bound, 60, "the installer DaemonSet's pods bound to both nodes", interval=0.5)
        for node in (env.node, env.half_node):
            env.set_installer_ready(node, True)
        yield env
    finally:
        cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "namespace", env.pods_ns, "--wait=false", check=False)
        cluster.kubectl("delete", "node", env.node, env.half_node, "--wait=false", check=False)
        cluster.kubectl(
            "-n", DEVICE_PLUGIN_NS, "delete", "configmap", "sriovdp-config", check=False
        )
        webhook.stop()


@contextlib.contextmanager
def replaced(env: DoctorEnv, kind: str, namespace: str, name: str, change: Any) -> Iterator[None]:
    """`change(obj)` applied to a copy of the object, which is put back afterwards."""
    original = env.get(kind, "-n", namespace, name)
    changed = json.loads(json.dumps(original))
    change(changed)
    env.kubectl("replace", "-f", "-", input=json.dumps(strip(changed)))
    try:
        yield
    finally:
        current = env.get(kind, "-n", namespace, name)
        original["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        env.kubectl("replace", "-f", "-", input=json.dumps(original))
