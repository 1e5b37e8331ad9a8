"""Golden table: pods the webhook lets in, and exactly how it changes them."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import pytest

from tests.webhook.builders import (
    A1,
    B2,
    BOND0,
    BOND_CONFIG,
    EXAMPLES,
    POOL_A,
    POOL_B,
    example_profiles,
    expected,
    nad,
    pod,
    source,
    vfs,
)
from webhook.mutation import mutate
from webhook.nads import StaticNadSource
from webhook.profiles import Profiles, parse_profiles

OURS = [A1, B2, BOND0]
MACVLAN = nad("macvlan", None, {"type": "macvlan"}, namespace="other")
# The example profile, allowing the pod's own entries to name NADs in namespace `other` too.
ALLOWS_OTHER = parse_profiles(
    (EXAMPLES / "profiles.yaml").read_text() + "    allowedNamespaces: [other]\n"
)
SAME_POOL = parse_profiles(
    """
profiles:
  default:
    legs:
      - {network: sriov-pf-a, interface: net1}
      - {network: sriov-pf-a2, interface: net2}
    bond: {network: bond-net, interface: bond0}
    requireDistinctPools: false
"""
)


@dataclass
class Case:
    id: str
    pod: dict[str, Any]
    networks: list[dict[str, Any]] | None
    resources: dict[str, Any] | None
    container: int = 0
    namespace: str | None = "default"
    nads: StaticNadSource = field(default_factory=source)
    profiles: Profiles = field(default_factory=example_profiles)
    warnings: tuple[str, ...] = ()


def _containers(*names: str, resources: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": n, "image": "alpine"} for n in names]
    if resources is not None:
        out[0]["resources"] = resources
    return out


MAC_IPS = {
    "name": "macvlan",
    "namespace": "other",
    "mac": "02:00:00:00:00:01",
    "ips": ["10.1.1.5/24"],
    "interface": "eth1",
}

CASES = [
    Case("seed pod: no annotations, no resources", pod(), OURS, vfs()),
    Case(
        "short form entry kept (as JSON) before ours",
        pod(networks="other/macvlan@eth1"),
        [{"name": "macvlan", "namespace": "other", "interface": "eth1"}, *OURS],
        vfs(),
        nads=source(MACVLAN),
        profiles=ALLOWS_OTHER,
    ),
    Case(
        "JSON entry with mac and ips kept field for field",
        pod(networks=[MAC_IPS]),
        [MAC_IPS, *OURS],
        vfs(),
        nads=source(MACVLAN),
        profiles=ALLOWS_OTHER,
    ),
    Case(
        "user's own SR-IOV entry counts toward its pool",
        pod(networks="sriov-pf-a@net5"),
        [{"name": "sriov-pf-a", "interface": "net5"}, *OURS],
        vfs(a=2),
    ),
    Case(
        "other resources untouched, user's larger value kept, requests = limits",
        pod(
            containers=_containers(
                "app",
                resources={"requests": {"cpu": "1"}, "limits": {POOL_A: "4", "memory": "1Gi"}},
            )
        ),
        OURS,
        {
            "requests": {"cpu": "1", POOL_A: "4", POOL_B: "1"},
            "limits": {POOL_A: "4", "memory": "1Gi", POOL_B: "1"},
        },
    ),
    Case(
        "target container by annotation; init containers and others untouched",
        pod(
            annotations={"bond-injector.io/container": "worker"},
            containers=_containers("sidecar", "worker"),
            init_containers=[{"name": "init", "image": "busybox"}],
        ),
        OURS,
        vfs(),
        container=1,
    ),
    Case(
        "other annotations kept, the networks key added beside them",
        pod(annotations={"example.com/owner": "team-a"}),
        OURS,
        vfs(),
    ),
    Case(
        "complete annotation in short form is left as written (reinvocation-safe)",
        pod(networks="sriov-pf-a@net1, sriov-pf-b@net2, default/bond-net@bond0"),
        None,
        vfs(),
    ),
    Case(
        "namespace from the request when metadata has none",
        pod(networks="sriov-pf-a@net1"),
        [{"name": "sriov-pf-a", "interface": "net1"}, B2, BOND0],
        vfs(),
        namespace="team",
        nads=StaticNadSource(
            nad(n.name, n.resource_name, n.config, namespace="team")
            for n in source()._nads.values()
        ),
    ),
    Case(
        "requireDistinctPools false: same pool twice is a warning",
        pod(),
        [A1, {"name": "sriov-pf-a2", "interface": "net2"}, BOND0],
        {"requests": {POOL_A: "2"}, "limits": {POOL_A: "2"}},
        nads=source(nad("sriov-pf-a2", POOL_A, {"type": "sriov"})),
        profiles=SAME_POOL,
        warnings=(
            "pod default/test-pod: legs net1 (default/sriov-pf-a) and net2 (default/sriov-pf-a2) "
            "both use pool intel.com/sriov_pf_a, so both VFs may sit on one NIC; give each leg a "
            "NAD with its own pool",
        ),
    ),
    Case(
        "a user entry whose NAD is missing is a warning, not counted",
        pod(networks="ghost@eth9"),
        [{"name": "ghost", "interface": "eth9"}, *OURS],
        vfs(),
        warnings=(
            "pod default/test-pod: annotation entry 0 names network-attachment-definition "
            "default/ghost, which does not exist; Multus will fail to attach it",
        ),
    ),
    Case(
        "active-backup without failOverMac 1 is a warning",
        pod(),
        OURS,
        vfs(),
        nads=source(nad("bond-net", None, {**BOND_CONFIG, "failOverMac": 0})),
        warnings=(
            "network-attachment-definition default/bond-net: active-backup over SR-IOV VFs needs "
            '"failOverMac": 1 (VFs usually refuse MAC changes); it is 0',
        ),
    ),
    Case(
        "bond in a conflist is found",
        pod(),
        OURS,
        vfs(),
        nads=source(
            nad(
                "bond-net",
                None,
                {"cniVersion": "1.0.0", "plugins": [BOND_CONFIG, {"type": "tuning"}]},
            )
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_allowed(case: Case) -> None:
    before = copy.deepcopy(case.pod)
    decision = mutate(case.pod, case.namespace, case.profiles, case.nads.cached)
    assert decision.allowed, decision.message
    assert decision.warnings == case.warnings
    want = expected(case.pod, case.networks, case.resources, case.container)
    assert jsonpatch.apply_patch(case.pod, decision.patch) == want
    assert case.pod == before, "the input pod must not be modified"
    _changes_only_what_differs(case.pod, decision.patch, want)


_MISSING = object()


def _at(doc: Any, path: str) -> Any:
    """The value at a JSON Pointer (RFC 6901), or _MISSING."""
    for token in path.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        else:
            return _MISSING
    return doc


def _changes_only_what_differs(pod: dict[str, Any], patch: list[Any], want: Any) -> None:
    """Guards a patch as small as the change (what the API server's audit log and the user see):
    no op is wasted, and no object that was there is replaced whole, its unchanged keys with it.
    Checked on the pods themselves, not against one library's diff algorithm."""
    for i, op in enumerate(patch):
        old = _at(pod, op["path"])
        if op["op"] == "replace":
            assert old is not _MISSING and old != op["value"], op
            assert not (isinstance(old, dict) and isinstance(op["value"], dict)), op
        try:
            without = jsonpatch.apply_patch(pod, patch[:i] + patch[i + 1 :])
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            continue  # a later op needs this one
        assert without != want, f"not needed: {op}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_second_pass_changes_nothing(case: Case) -> None:
    first = mutate(case.pod, case.namespace, case.profiles, case.nads.cached)
    mutated = jsonpatch.apply_patch(case.pod, first.patch)
    again = mutate(mutated, case.namespace, case.profiles, case.nads.cached)
    assert again.allowed
    assert again.patch == []


def test_annotation_key_slash_is_escaped_in_the_patch() -> None:
    decision = mutate(pod(annotations={"a": "b"}), "default", example_profiles(), source().cached)
    paths = [op["path"] for op in decision.patch]
    assert "/metadata/annotations/k8s.v1.cni.cncf.io~1networks" in paths


@pytest.mark.parametrize(
    "labels",
    [{}, {"bond": "false"}, {"bond": "True"}, {"app": "x"}],
    ids=["none", "false", "True", "other"],
)
def test_pods_without_the_label_are_left_alone(labels: dict[str, str]) -> None:
    decision = mutate(pod(labels=labels), "default", example_profiles(), source().cached)
    assert decision.allowed
    assert decision.patch == []
    assert decision.outcome == "skipped"


def test_warnings_fit_the_api_servers_limit() -> None:
    for case in CASES:
        assert all(len(w) <= 256 for w in case.warnings), case.id
