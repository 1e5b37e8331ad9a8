"""Issue 14: `bond-injector doctor --pod NAME` says why a pod has no bond, or which VFs it got."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.doctor.conftest import DoctorEnv, rows_of
from tests.poll import poll
from tests.rigs.dev import NAMESPACE

pytestmark = pytest.mark.cluster

Capsys = pytest.CaptureFixture[str]
SEED = Path(__file__).parents[2] / "examples" / "seed-pod.yaml"


def _pod(name: str, *, labelled: bool = True, **spec: Any) -> dict[str, Any]:
    pod: dict[str, Any] = yaml.safe_load(SEED.read_text())
    pod["metadata"]["name"] = name
    if not labelled:
        pod["metadata"]["labels"] = {}
    pod["spec"].update(spec)
    return pod


def _pod_row(env: DoctorEnv, capsys: Capsys, *args: str) -> tuple[int, dict[str, Any]]:
    code, rows = env.doctor(*args, capsys=capsys)
    pod_rows = rows_of(rows, "pod")
    assert len(pod_rows) >= 1, json.dumps(rows, indent=1)
    return code, pod_rows[0]


def _create(env: DoctorEnv, namespace: str, obj: dict[str, Any]) -> None:
    env.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(obj))


def test_a_pod_without_the_label(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    name = f"plain-{secrets.token_hex(3)}"
    _create(doctor_env, doctor_env.pods_ns, _pod(name, labelled=False))
    code, row = _pod_row(doctor_env, capsys, "--pod", name)
    assert code == 1
    assert row["status"] == "fail"
    assert row["subject"] == f"pod {doctor_env.pods_ns}/{name}"
    assert "not labelled for the webhook: its labels miss bond=true" in row["message"]
    assert 'metadata.labels.bond: "true"' in row["fix"]


def test_a_pod_in_an_opted_out_namespace(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    namespace = f"doctor-out-{secrets.token_hex(3)}"
    doctor_env.cluster.create_namespace(namespace)
    try:
        doctor_env.kubectl("label", "namespace", namespace, "bond-injector.io/disabled=true")
        _create(doctor_env, namespace, _pod("opted-out"))
        code, rows = doctor_env.doctor("-n", namespace, "--pod", "opted-out", capsys=capsys)
    finally:
        doctor_env.kubectl("delete", "namespace", namespace, "--wait=false")
    assert code == 1
    [row] = rows_of(rows, "pod")
    assert row["status"] == "fail"
    assert f"namespace {namespace} is opted out of the webhook" in row["message"]
    assert "bond-injector.io/disabled NotIn ['true']" in row["message"]
    # Nor is the dry-run pod of that namespace sent to the webhook: said, not failed.
    [admission] = rows_of(rows, "admission")
    assert admission["status"] == "skip"


def test_pods_denied_by_the_webhook(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    """A ReplicaSet's pods, refused at admission: they never exist, their events say why."""
    name = f"denied-{secrets.token_hex(3)}"
    template = _pod(name)
    template["metadata"]["annotations"] = {"bond-injector.io/profile": "nope"}
    template["metadata"]["labels"]["app"] = name
    template["spec"]["restartPolicy"] = "Always"
    del template["metadata"]["name"]
    replica_set = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    _create(doctor_env, doctor_env.pods_ns, replica_set)

    def denied_event() -> bool:
        events = doctor_env.get("events", "-n", doctor_env.pods_ns)["items"]
        return any(
            e["reason"] == "FailedCreate" and e["involvedObject"]["name"] == name for e in events
        )

    poll(denied_event, 60, f"replicaset {name}'s FailedCreate event", interval=0.5)
    code, rows = doctor_env.doctor("--pod", name, capsys=capsys)
    assert code == 1
    from_events, replay = rows_of(rows, "pod")
    assert from_events["status"] == "fail"
    assert from_events["subject"] == f"replicaset {doctor_env.pods_ns}/{name}"
    assert "its pods are denied" in from_events["message"]
    assert "names profile 'nope', which is not defined (defined: default)" in from_events["message"]
    assert replay["status"] == "fail"
    assert replay["subject"].startswith(f"replicaset {doctor_env.pods_ns}/{name}: its pod template")
    assert "names profile 'nope', which is not defined" in replay["message"]


def test_a_pending_pod_with_the_schedulers_reason(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    name = f"pending-{secrets.token_hex(3)}"
    pod = _pod(name, nodeSelector={"doctor.bond-injector.io/rack": "nowhere"})
    _create(doctor_env, doctor_env.pods_ns, pod)

    def unschedulable() -> bool:
        stored = doctor_env.get("pod", "-n", doctor_env.pods_ns, name)
        conditions = stored.get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conditions)

    poll(unschedulable, 60, f"the scheduler to give up on pod {name}", interval=0.5)
    code, row = _pod_row(doctor_env, capsys, "--pod", name)
    assert code == 1
    assert row["status"] == "fail"
    assert row["message"].startswith("Pending, not scheduled: 0/")
    assert "didn't match Pod's node affinity/selector" in row["message"]


def test_an_attached_pod_shows_its_vfs(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    name = f"bonded-{secrets.token_hex(3)}"
    _create(doctor_env, doctor_env.pods_ns, _pod(name))
    poll(
        lambda: doctor_env.get("pod", "-n", doctor_env.pods_ns, name)["spec"].get("nodeName"),
        60,
        f"pod {name} to be bound",
        interval=0.5,
    )
    # What Multus writes once the chain ran (stand-in: no kubelet or Multus in this rig).
    status = [
        {"name": "cbr0", "interface": "eth0", "ips": ["10.244.0.7"], "default": True},
        {
            "name": f"{NAMESPACE}/sriov-pf-a",
            "interface": "net1",
            "device-info": {
                "type": "pci",
                "version": "1.1.0",
                "pci": {"pci-address": "0000:3b:02.1"},
            },
        },
        {
            "name": f"{NAMESPACE}/sriov-pf-b",
            "interface": "net2",
            "device-info": {
                "type": "pci",
                "version": "1.1.0",
                "pci": {"pci-address": "0000:5e:02.3"},
            },
        },
        {"name": f"{NAMESPACE}/bond-net", "interface": "bond0", "ips": ["10.56.217.2"]},
    ]
    doctor_env.kubectl(
        "-n", doctor_env.pods_ns, "annotate", "pod", name,
        f"k8s.v1.cni.cncf.io/network-status={json.dumps(status)}",
    )  # fmt: skip
    code, row = _pod_row(doctor_env, capsys, "--pod", name)
    assert code == 0
    assert row["status"] == "pass"
    assert row["message"] == (
        f"attached: bond0 (10.56.217.2) over net1 = VF 0000:3b:02.1 of {NAMESPACE}/sriov-pf-a; "
        f"net2 = VF 0000:5e:02.3 of {NAMESPACE}/sriov-pf-b"
    )


def test_a_pod_that_is_not_there(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    code, row = _pod_row(doctor_env, capsys, "--pod", "no-such-pod")
    assert code == 1
    assert row["status"] == "fail"
    assert "no pod no-such-pod in namespace" in row["message"]
