"""Issue 14: `bond-injector doctor` against a real kube-apiserver, healthy and with each fault.

Every test asserts the row that names the fault and the exit code (1 on a failed row, 0 when
only warnings are left).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from certs.cli import main as certs_main
from tests.doctor.conftest import (
    DEVICE_PLUGIN_NS,
    POOL_A,
    POOL_B,
    DoctorEnv,
    device_plugin_config,
    replaced,
    rows_of,
)
from tests.poll import poll
from tests.rigs.dev import NAMESPACE, RELEASE

pytestmark = pytest.mark.cluster

NAD = "network-attachment-definition"
RESOURCE_NAME = "k8s.v1.cni.cncf.io/resourceName"
Capsys = pytest.CaptureFixture[str]


def _one(
    rows: list[dict[str, Any]], check: str, status: str, subject_part: str = ""
) -> dict[str, Any]:
    """The one row of `check` about `subject_part` with `status`; fails showing them all."""
    found = [r for r in rows_of(rows, check) if subject_part in r["subject"]]
    assert [r["status"] for r in found] == [status], json.dumps(rows_of(rows, check), indent=1)
    return found[0]


def test_a_healthy_installation_passes_every_check(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 0, json.dumps(rows, indent=1)
    assert {r["status"] for r in rows} == {"pass"}, json.dumps(rows, indent=1)
    checks = [r["check"] for r in rows]
    for check in (
        "webhook-config", "profiles", "nad", "resource-name", "pools", "bond-config",
        "device-plugin", "nodes", "cni-daemonset", "webhook-tls", "admission",
    ):  # fmt: skip
        assert check in checks
    assert len(rows_of(rows, "nad")) == 3  # two legs and the bond
    nodes = _one(rows, "nodes", "pass")["message"]
    assert doctor_env.node in nodes
    assert f"only some of the pools on: {doctor_env.half_node}" in nodes
    assert "ready on all 1 node(s)" in _one(rows, "cni-daemonset", "pass")["message"]
    assert POOL_A in _one(rows, "admission", "pass")["message"]


def test_the_table_shows_each_row_and_its_fix(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    from webhook.cli import main  # noqa: PLC0415

    kubeconfig = str(doctor_env.cluster.kubeconfig)
    with replaced(doctor_env, NAD, NAMESPACE, "sriov-pf-b", _drop_resource_name):
        capsys.readouterr()
        code = main(["doctor", "--kubeconfig", kubeconfig, "-n", doctor_env.pods_ns])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL  resource-name  profile default: {NAMESPACE}/sriov-pf-b (net2)" in out
    assert f"fix: kubectl annotate network-attachment-definition -n {NAMESPACE} sriov-pf-b" in out
    assert out.rstrip().endswith("skipped")


def test_a_missing_leg_nad(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    original = doctor_env.get(NAD, "-n", NAMESPACE, "sriov-pf-b")
    doctor_env.kubectl("-n", NAMESPACE, "delete", NAD, "sriov-pf-b")
    try:
        code, rows = doctor_env.doctor(capsys=capsys)
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            original["metadata"].pop(key, None)
        doctor_env.apply(original)
    assert code == 1
    row = _one(rows, "nad", "fail", "sriov-pf-b")
    assert f"{NAD} {NAMESPACE}/sriov-pf-b does not exist" in row["message"]
    assert "create it" in row["fix"]


def _drop_resource_name(nad: dict[str, Any]) -> None:
    del nad["metadata"]["annotations"][RESOURCE_NAME]


def test_a_leg_nad_without_resource_name(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    with replaced(doctor_env, NAD, NAMESPACE, "sriov-pf-b", _drop_resource_name):
        code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 1
    row = _one(rows, "resource-name", "fail", "sriov-pf-b")
    assert f"has no {RESOURCE_NAME} annotation" in row["message"]


def test_the_same_pool_twice(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    def same_pool(nad: dict[str, Any]) -> None:
        nad["metadata"]["annotations"][RESOURCE_NAME] = POOL_A

    with replaced(doctor_env, NAD, NAMESPACE, "sriov-pf-b", same_pool):
        code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 1
    row = _one(rows, "pools", "fail")
    assert f"share pool {POOL_A}" in row["message"]
    # And the webhook itself refuses such pods, as the dry-run shows.
    assert "both use pool" in _one(rows, "admission", "fail")["message"]


def test_a_leg_whose_vf_does_not_follow_its_pf_is_a_warning(
    doctor_env: DoctorEnv, capsys: Capsys
) -> None:
    with replaced(doctor_env, NAD, NAMESPACE, "sriov-pf-a", _config({"link_state": "enable"})):
        code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 0
    row = _one(rows, "leg-config", "warn", "sriov-pf-a")
    assert "the VF's link_state is 'enable'" in row["message"]
    assert '"link_state": "auto"' in row["fix"]


def _config(change: dict[str, Any]) -> Any:
    def apply(nad: dict[str, Any]) -> None:
        config = json.loads(nad["spec"]["config"])
        config.update(change)
        nad["spec"]["config"] = json.dumps(config)

    return apply


def test_bond_links_that_do_not_match_the_legs(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    links = _config({"links": [{"name": "net1"}, {"name": "net3"}]})
    with replaced(doctor_env, NAD, NAMESPACE, "bond-net", links):
        code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 1
    row = _one(rows, "bond-config", "fail")
    assert "links ['net1', 'net3'] do not match the profile's leg interfaces" in row["message"]


def test_a_bond_config_the_cni_refuses(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    with replaced(doctor_env, NAD, NAMESPACE, "bond-net", _config({"mode": "fastest"})):
        code, rows = doctor_env.doctor(capsys=capsys)
    assert code == 1
    row = _one(rows, "bond-config", "fail")
    assert "the bond CNI refuses this config on the node" in row["message"]
    assert "invalid bond config field 'mode'" in row["message"]


@pytest.mark.parametrize(
    "case",
    [
        ("0000:3b:00.1", "warn", "two ports of one NIC", 0),
        ("0000:3b:00.0", "fail", "both select 0000:3b:00.0", 1),
    ],
    ids=["two-ports-of-one-nic", "one-pf"],
)
def test_device_plugin_pools_on_one_nic(
    doctor_env: DoctorEnv, capsys: Capsys, case: tuple[str, str, str, int]
) -> None:
    root_b, status, text, code = case
    doctor_env.apply(device_plugin_config("0000:3b:00.0", root_b))
    try:
        got, rows = doctor_env.doctor(capsys=capsys)
    finally:
        doctor_env.apply(device_plugin_config("0000:3b:00.0", "0000:5e:00.0"))
    row = _one(rows, "device-plugin", status)
    assert row["subject"] == f"configmap {DEVICE_PLUGIN_NS}/sriovdp-config, profile default"
    assert text in row["message"]
    assert got == code


def _patch_allocatable(env: DoctorEnv, node: str, pools: dict[str, str | None]) -> None:
    status = {"status": {"allocatable": pools, "capacity": pools}}
    env.kubectl(
        "patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )


def test_no_node_advertises_both_pools(doctor_env: DoctorEnv, capsys: Capsys) -> None:
    _patch_allocatable(doctor_env, doctor_env.node, {POOL_B: None})
    try:
        code, rows = doctor_env.doctor(capsys=capsys)
    finally:
        _patch_allocatable(doctor_env, doctor_env.node, {POOL_B: "4"})
    assert code == 1
    row = _one(rows, "nodes", "fail")
    assert f"no node advertises allocatable {POOL_A} and {POOL_B}" in row["message"]
    assert doctor_env.node in row["message"]  # among those with only some of the pools


def test_a_stale_ca_bundle(doctor_env: DoctorEnv, capsys: Capsys, tmp_path: Path) -> None:
    assert certs_main(["generate", "--out-dir", str(tmp_path), "--ip", "127.0.0.1"]) == 0
    other_ca = base64.b64encode((tmp_path / "ca.crt").read_bytes()).decode()

    def stale(config: dict[str, Any]) -> None:
        config["webhooks"][0]["clientConfig"]["caBundle"] = other_ca

    with replaced(doctor_env, "mutatingwebhookconfiguration", "", RELEASE, stale):
        # The API server's copy of the configuration follows a watch: wait until it calls
        # the webhook with the stale bundle.
        def admission_fails() -> list[dict[str, Any]] | None:
            code, rows = doctor_env.doctor(capsys=capsys)
            failing = [r for r in rows_of(rows, "admission") if r["status"] == "fail"]
            return rows if code == 1 and failing else None

        rows = poll(admission_fails, 30, "the dry-run admission to fail on the stale caBundle")
    tls = _one(rows, "webhook-tls", "fail")
    assert "serves a certificate the caBundle does not verify" in tls["message"]
    assert "certs ensure --webhook-config bond-injector" in tls["fix"]
    assert "could not call the webhook" in _one(rows, "admission", "fail")["message"]
    _wait_healthy(doctor_env, capsys)


def _wait_healthy(env: DoctorEnv, capsys: Capsys) -> None:
    poll(lambda: env.doctor(capsys=capsys)[0] == 0, 30, "the doctor to pass again", interval=0.5)


def test_the_cni_daemonset_not_ready_on_a_node_with_the_pools(
    doctor_env: DoctorEnv, capsys: Capsys
) -> None:
    doctor_env.set_installer_ready(doctor_env.node, False)
    try:
        code, rows = doctor_env.doctor(capsys=capsys)
    finally:
        doctor_env.set_installer_ready(doctor_env.node, True)
    assert code == 1
    row = _one(rows, "cni-daemonset", "fail")
    assert f"not ready on {doctor_env.node}" in row["message"]
    assert "ContainersNotReady" in row["message"]


def test_a_service_webhook_without_ready_endpoints(
    doctor_env: DoctorEnv, capsys: Capsys, tmp_path: Path
) -> None:
    """The in-cluster shape (clientConfig.service): the doctor follows the Service to its
    EndpointSlices. A second configuration that matches no pod, so admission is untouched."""
    ns, name = doctor_env.pods_ns, "doctor-svc"
    ca_bundle = doctor_env.webhook.ca_bundle_b64
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pods.bond-injector.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "clientConfig": {
                    "service": {"namespace": ns, "name": name, "path": "/mutate", "port": 443},
                    "caBundle": ca_bundle,
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "objectSelector": {"matchLabels": {"doctor.bond-injector.io/never": "true"}},
            }
        ],
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]},
    }
    # A webhook pod that is not ready: its address is listed, never connected to.
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-1",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": False}}],
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
    }
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        "profiles:\n  default:\n    legs:\n"
        f"      - {{network: {NAMESPACE}/sriov-pf-a, interface: net1}}\n"
        f"      - {{network: {NAMESPACE}/sriov-pf-b, interface: net2}}\n"
        f"    bond: {{network: {NAMESPACE}/bond-net, interface: bond0}}\n"
    )
    for obj in (config, service, endpoints):
        doctor_env.apply(obj)
    try:
        code, rows = doctor_env.doctor(
            "--webhook-config", name, "--profiles", str(profiles), capsys=capsys
        )
    finally:
        doctor_env.kubectl("delete", "mutatingwebhookconfiguration", name)
        doctor_env.kubectl("-n", ns, "delete", "service", name)
        doctor_env.kubectl("-n", ns, "delete", "endpointslice", f"{name}-1")
    assert code == 1
    assert f"calls service {ns}/{name}:443" in _one(rows, "webhook-config", "pass")["message"]
    assert _one(rows, "profiles", "pass")["subject"] == str(profiles)
    row = _one(rows, "webhook-tls", "fail")
    assert row["subject"] == f"service {ns}/{name}"
    assert "the webhook's Service has no ready endpoints" in row["message"]
