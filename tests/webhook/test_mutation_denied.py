"""Golden table: every denial, word for word (they name the object, the field and the fix)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.webhook.builders import BOND_CONFIG, POOL_A, example_profiles, nad, pod, source
from webhook.mutation import mutate
from webhook.nads import StaticNadSource
from webhook.profiles import Profiles

P = "pod default/test-pod: "
ANN = P + "annotation k8s.v1.cni.cncf.io/networks "
FIX = "; fix it, or remove it and let profile 'default' add the bond"
BOND_NAD = "network-attachment-definition default/bond-net: "


@dataclass
class Denial:
    id: str
    pod: dict[str, Any]
    message: str
    nads: StaticNadSource = field(default_factory=source)
    profiles: Profiles = field(default_factory=example_profiles)


DENIALS = [
    Denial(
        "unknown profile",
        pod(annotations={"bond-injector.io/profile": "gold"}),
        P + "annotation bond-injector.io/profile names profile 'gold', which is not defined "
        "(defined: default); use one of them or remove the annotation",
    ),
    Denial(
        "unknown container",
        pod(annotations={"bond-injector.io/container": "db"}),
        P + "annotation bond-injector.io/container names container 'db', which is not in "
        "spec.containers (have: app); name one of them or remove the annotation",
    ),
    Denial(
        "no containers",
        {"metadata": {"name": "test-pod", "labels": {"bond": "true"}}, "spec": {}},
        P + "spec.containers is empty; add the container to bond",
    ),
    Denial(
        "annotation: broken JSON",
        pod(networks='[{"name": "x"'),
        ANN + "is not valid JSON: Expecting ',' delimiter at character 13" + FIX,
    ),
    Denial(
        "annotation: JSON object, not list",
        pod(networks='{"name": "x"}'),
        ANN + "must be a JSON list of objects, not a single object; wrap it in [ ]" + FIX,
    ),
    Denial(
        "annotation: JSON entry without name",
        pod(networks='[{"interface": "eth1"}]'),
        ANN + "entry 0 has no 'name'; every entry names a network" + FIX,
    ),
    Denial(
        "annotation: JSON entry not an object",
        pod(networks='["macvlan"]'),
        ANN + "entry 0 must be an object with at least a 'name'" + FIX,
    ),
    Denial(
        "annotation: two slashes",
        pod(networks="a/b/c"),
        ANN + "entry 'a/b/c' has more than one '/'; use namespace/name@interface" + FIX,
    ),
    Denial(
        "annotation: two ats",
        pod(networks="net@a@b"),
        ANN + "entry 'net@a@b' has more than one '@'; use namespace/name@interface" + FIX,
    ),
    Denial(
        "annotation: bad characters",
        pod(networks="my_net"),
        ANN + "entry 'my_net': 'my_net' is not a valid name (letters, digits and '-', starting "
        "and ending with a letter or digit)" + FIX,
    ),
    Denial(
        "annotation: interface too long",
        pod(networks='[{"name": "x", "interface": "averyveryverylongname"}]'),
        ANN
        + "entry 0 (x): interface name 'averyveryverylongname' is longer than 15 characters"
        + FIX,
    ),
    Denial(
        "annotation: interface with whitespace",
        pod(networks='[{"name": "x", "interface": "net 1"}]'),
        ANN + "entry 0 (x): interface name 'net 1' contains whitespace" + FIX,
    ),
    Denial(
        "annotation: interface with a colon, which the kernel refuses",
        pod(networks='[{"name": "x", "interface": "net:1"}]'),
        ANN + "entry 0 (x): interface name 'net:1' contains ':'" + FIX,
    ),
    Denial(
        "user entry takes a profile interface",
        pod(networks="other/macvlan@net2"),
        ANN + "entry 0 (other/macvlan@net2) already uses interface net2, which profile 'default' "
        "needs for sriov-pf-b@net2; give that entry another interface name or choose another "
        "profile",
    ),
    Denial(
        "user entry without interface is net1 by position",
        pod(networks="macvlan"),
        ANN + "entry 0 (macvlan) already uses interface net1 (Multus names an entry without one by "
        "position), which profile 'default' needs for sriov-pf-a@net1; give that entry another "
        "interface name or choose another profile",
    ),
    Denial(
        "bond listed before its links",
        pod(networks="bond-net@bond0"),
        ANN + "lists the bond bond-net@bond0 before its link sriov-pf-a@net1; Multus attaches in "
        "order, so list the links first or remove the bond entry",
    ),
    Denial(
        "leg NAD missing",
        pod(),
        "network-attachment-definition default/sriov-pf-b does not exist (profile 'default', leg "
        "net2); create it, or fix the profile's network",
        nads=source(drop=("sriov-pf-b",)),
    ),
    Denial(
        "leg NAD without resourceName",
        pod(),
        "network-attachment-definition default/sriov-pf-b has no k8s.v1.cni.cncf.io/resourceName "
        "annotation; the bond profile 'default' needs one SR-IOV pool per NIC for leg net2",
        nads=source(nad("sriov-pf-b", None, {"type": "sriov"})),
    ),
    Denial(
        "two legs in one pool",
        pod(),
        P + "legs net1 (default/sriov-pf-a) and net2 (default/sriov-pf-b) both use pool "
        "intel.com/sriov_pf_a, so both VFs may sit on one NIC; give each leg a NAD with its own "
        "pool",
        nads=source(nad("sriov-pf-b", POOL_A, {"type": "sriov"})),
    ),
    Denial(
        "bond NAD missing",
        pod(),
        "network-attachment-definition default/bond-net does not exist (profile 'default', bond "
        "bond0); create it, or fix the profile's bond network",
        nads=source(drop=("bond-net",)),
    ),
    Denial(
        "bond config not JSON",
        pod(),
        BOND_NAD + "spec.config is not valid JSON (Expecting value); fix the NAD",
        nads=source(nad("bond-net", None, "not json")),
    ),
    Denial(
        "bond NAD is not a bond",
        pod(),
        BOND_NAD
        + "spec.config has no plugin of type 'bond'; point the profile's bond at a bond NAD",
        nads=source(nad("bond-net", None, {"type": "macvlan"})),
    ),
    Denial(
        "bond links differ from the legs",
        pod(),
        BOND_NAD + "spec.config links ['eth1', 'eth2'] do not match the profile's leg interfaces "
        "['net1', 'net2']; the bond would fail on the node. Set links to [{'name': 'net1'}, "
        "{'name': 'net2'}] or change the profile",
        nads=source(
            nad("bond-net", None, {**BOND_CONFIG, "links": [{"name": "eth1"}, {"name": "eth2"}]})
        ),
    ),
    Denial(
        "bond links missing",
        pod(),
        BOND_NAD + "spec.config links None do not match the profile's leg interfaces "
        "['net1', 'net2']; the bond would fail on the node. Set links to [{'name': 'net1'}, "
        "{'name': 'net2'}] or change the profile",
        nads=source(nad("bond-net", None, {k: v for k, v in BOND_CONFIG.items() if k != "links"})),
    ),
    Denial(
        "bond looks for links on the host",
        pod(),
        BOND_NAD + "spec.config has linksInContainer False; the links are VFs inside the pod, so "
        'set "linksInContainer": true',
        nads=source(nad("bond-net", None, {**BOND_CONFIG, "linksInContainer": False})),
    ),
    Denial(
        "user's resource value is not a whole number",
        pod(containers=[{"name": "app", "resources": {"limits": {POOL_A: "1.5"}}}]),
        P + "container 'app' resources.limits[intel.com/sriov_pf_a] is '1.5', not a whole number; "
        "extended resources are counted in units, e.g. '1'",
    ),
]


@pytest.mark.parametrize("case", DENIALS, ids=[d.id for d in DENIALS])
def test_denied(case: Denial) -> None:
    decision = mutate(case.pod, "default", case.profiles, case.nads.cached)
    assert not decision.allowed
    assert decision.patch == []
    assert decision.outcome == "denied"
    assert decision.message == case.message


def test_generate_name_is_named_in_denials() -> None:
    p = pod(annotations={"bond-injector.io/profile": "gold"})
    p["metadata"] = {
        "generateName": "web-",
        "labels": {"bond": "true"},
        "annotations": p["metadata"]["annotations"],
    }
    decision = mutate(p, "team", example_profiles(), source().cached)
    assert decision.message.startswith("pod team/web-*: annotation bond-injector.io/profile")


def _with(path: tuple[str | int, ...], value: Any, base: dict[str, Any] | None = None) -> Any:
    """The seed pod (or `base`) with the field at `path` set to `value`."""
    p = pod() if base is None else base
    parent: Any = p
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return p


WITH_RESOURCES = pod(containers=[{"name": "app", "resources": {"limits": {"cpu": "1"}}}])
SHAPES = [
    ("metadata", "x", "metadata must be a map, not a string", "pod.metadata"),
    (("metadata", "labels"), ["bond=true"], "metadata.labels must be a map, not a list",
     "pod.metadata.labels"),
    (("metadata", "name"), 7, "metadata.name must be a string, not a number", "pod.metadata.name"),
    (("metadata", "namespace"), {}, "metadata.namespace must be a string, not a map",
     "pod.metadata.namespace"),
    (("metadata", "annotations"), "a=b", "metadata.annotations must be a map, not a string",
     "pod.metadata.annotations"),
    (("metadata", "annotations"), {"bond-injector.io/profile": True},
     "metadata.annotations[bond-injector.io/profile] must be a string, not a boolean",
     "pod.metadata.annotations"),
    ("spec", [], "spec must be a map, not a list", "pod.spec"),
    (("spec", "containers"), {"name": "app"},
     "spec.containers must be a list of containers, not a map", "pod.spec.containers"),
    (("spec", "containers"), ["app"],
     "spec.containers[0] must be a container (a map), not a string", "pod.spec.containers"),
    (("spec", "containers", 0, "name"), None, None, None),  # a missing name is no shape error
    (("spec", "containers", 0, "name"), ["app"],
     "spec.containers[0].name must be a string, not a list", "pod.spec.containers.name"),
    (("spec", "containers", 0, "resources"), [],
     "spec.containers[0].resources must be a map, not a list", "pod.spec.containers.resources"),
    (("spec", "containers", 0, "resources", "limits"), "1",
     "spec.containers[0].resources.limits must be a map, not a string",
     "pod.spec.containers.resources.limits"),
    (("spec", "containers", 0, "resources", "requests"), 2,
     "spec.containers[0].resources.requests must be a map, not a number",
     "pod.spec.containers.resources.requests"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "problem", "explain"),
    SHAPES,
    ids=[f"{'.'.join(map(str, p)) if isinstance(p, tuple) else p}={v!r}" for p, v, *_ in SHAPES],
)
def test_a_wrong_shape_is_a_denial_naming_the_field(
    path: str | tuple[str | int, ...], value: Any, problem: str | None, explain: str | None
) -> None:
    keys = path if isinstance(path, tuple) else (path,)
    base = WITH_RESOURCES if "resources" in keys and len(keys) > 4 else None
    p = _with(keys, value, None if base is None else copy.deepcopy(base))
    decision = mutate(p, "default", example_profiles(), source().cached)
    if problem is None:
        assert decision.allowed, decision.message
        return
    name = "?" if keys[-1] == "name" and keys[0] == "metadata" else "test-pod"
    pod_ref = "pod default/" + ("?" if keys == ("metadata",) else name)
    assert decision.outcome == "denied"
    assert decision.message == (
        f"{pod_ref}: {problem}; `kubectl explain {explain}` shows the shape a Pod has there"
    )


def test_wrong_shapes_outside_the_scope_are_not_judged() -> None:
    p = pod(labels={"app": "web"})
    p["metadata"]["annotations"] = {"x": 1}
    p["spec"] = "not a spec"
    assert mutate(p, "default", example_profiles(), source().cached).outcome == "skipped"
    assert mutate({"metadata": None}, "default", example_profiles(), source().cached).outcome == (
        "skipped"
    )
