"""The doctor's pure rules, table-driven: the device plugin's selectors, label selectors, a pod's
story past the scheduler, and the exit code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook.doctor import podwhy, selectors, sriovdp
from webhook.doctor.checks import ProfilePools
from webhook.doctor.nodes import daemonset_rows, device_plugin_rows
from webhook.doctor.report import Status, exit_code, failed, passed, warned
from webhook.profiles import parse_profiles

PROFILES = parse_profiles(
    "profiles:\n  default:\n    legs:\n"
    "      - {network: net/sriov-a, interface: net1}\n"
    "      - {network: net/sriov-b, interface: net2}\n"
    "    bond: {network: net/bond, interface: bond0}\n"
)
WEBHOOK: dict[str, Any] = {
    "objectSelector": {"matchLabels": {"bond": "true"}},
    "namespaceSelector": {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]},
            {"key": "bond-injector.io/disabled", "operator": "NotIn", "values": ["true"]},
        ]
    },
}


def _pools(*resources: dict[str, Any]) -> dict[str, sriovdp.Pool]:
    return sriovdp.parse_config(json.dumps({"resourceList": list(resources)}))


@pytest.mark.parametrize(
    ("a", "b", "same_pf", "same_nic"),
    [
        ({"rootDevices": ["3b:00.0"]}, {"rootDevices": ["0000:5e:00.0"]}, (), ()),
        ({"rootDevices": ["0000:3b:00.0"]}, {"rootDevices": ["0000:3B:00.1"]}, (), 1),
        ({"rootDevices": ["3b:00.0"]}, {"pciAddresses": ["0000:3b:00.0"]}, ("0000:3b:00.0",), ()),
        ({"pfNames": ["enp59s0f0#0-3"]}, {"pfNames": ["enp59s0f1"]}, (), 1),
        ({"pfNames": ["ens785f0np0"]}, {"pfNames": ["ens785f1np1"]}, (), 1),
        ({"pfNames": ["ens785f0"]}, {"pfNames": ["ens786f0"]}, (), ()),
        ({"pfNames": ["eth2#0-1"]}, {"pfNames": ["eth2#2-3"]}, ("eth2",), ()),
    ],
)
def test_which_pools_share_a_pf_or_a_nic(
    a: dict[str, Any], b: dict[str, Any], same_pf: tuple[str, ...], same_nic: Any
) -> None:
    pools = _pools(
        {"resourceName": "a", "selectors": a},
        {"resourceName": "b", "resourcePrefix": "intel.com", "selectors": [b]},  # v3.5 list form
    )
    found = sriovdp.overlap(pools["intel.com/a"], pools["intel.com/b"])  # default prefix too
    assert found.same_pf == same_pf
    assert len(found.same_nic) == (same_nic or 0)
    assert found.comparable


def test_a_broken_device_plugin_config_fails_naming_the_configmap() -> None:
    [row] = device_plugin_rows({"kube-system/sriovdp-config": "{"}, [])
    assert row.status is Status.FAIL
    assert row.message.startswith("configmap kube-system/sriovdp-config: config.json is not valid")


def test_pools_selected_by_vendor_only_cannot_be_compared() -> None:
    config = json.dumps(
        {
            "resourceList": [
                {"resourceName": "a", "selectors": {"vendors": ["8086"]}},
                {"resourceName": "b", "selectors": {"vendors": ["8086"]}},
            ]
        }
    )
    profile = ProfilePools("default", ("intel.com/a", "intel.com/b"))
    [row] = device_plugin_rows({"ns/sriovdp-config": config}, [profile])
    assert row.status is Status.SKIP


def test_label_selectors_say_what_is_unmet() -> None:
    assert selectors.matches(None, {})
    assert selectors.unmet(WEBHOOK["namespaceSelector"], {"bond-injector.io/disabled": "true"}) == [
        "bond-injector.io/disabled NotIn ['true']"
    ]
    selector = {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
    assert selectors.unmet(selector, {}) == ["a Exists"]


def _pod(annotations: dict[str, str], node: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "labels": {"bond": "true"},
            "annotations": annotations,
        },
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": "Pending"},
    }


NETWORKS = {
    "k8s.v1.cni.cncf.io/networks": json.dumps(
        [
            {"name": "sriov-a", "namespace": "net", "interface": "net1"},
            {"name": "sriov-b", "namespace": "net", "interface": "net2"},
            {"name": "bond", "namespace": "net", "interface": "bond0"},
        ]
    )
}


def test_a_labelled_pod_admitted_without_the_mutation() -> None:
    [row] = podwhy.pod_rows(_pod({}), {}, WEBHOOK, PROFILES, [])
    assert row.status is Status.FAIL
    assert "admitted without the webhook's mutation" in row.message


def test_a_scheduled_pod_whose_sandbox_failed_names_the_cni_error() -> None:
    events = [
        {
            "reason": "FailedCreatePodSandBox",
            "lastTimestamp": "2026-01-01T00:00:01Z",
            "message": "plugin type=\"bond\" failed (add): invalid bond config field 'miimon'",
        },
        {"reason": "Scheduled", "lastTimestamp": "2026-01-01T00:00:00Z", "message": "ok"},
    ]
    [row] = podwhy.pod_rows(_pod(NETWORKS, node="n1"), {}, WEBHOOK, PROFILES, events)
    assert row.status is Status.FAIL
    assert row.message == (
        'scheduled on n1, but its sandbox failed: plugin type="bond" failed (add): invalid bond '
        "config field 'miimon'"
    )


def test_a_scheduled_pod_without_a_network_status_is_a_warning() -> None:
    [row] = podwhy.pod_rows(_pod(NETWORKS, node="n1"), {}, WEBHOOK, PROFILES, [])
    assert row.status is Status.WARN
    assert "Multus has not reported bond0" in row.message


def test_the_daemonset_absent_from_a_node_with_the_pools() -> None:
    daemonset = {"metadata": {"namespace": "ns", "name": "cni"}}
    [row] = daemonset_rows(daemonset, [], ["n1"])
    assert row.status is Status.FAIL
    assert row.message.startswith("no pod on n1")


def test_only_a_failed_row_fails_the_run() -> None:
    assert exit_code([passed("a", "s", "m"), warned("b", "s", "m", "f")]) == 0
    assert exit_code([passed("a", "s", "m"), failed("b", "s", "m", "f")]) == 1
