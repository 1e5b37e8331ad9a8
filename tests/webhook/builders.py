"""Builders for pods, NADs and profiles used by the webhook tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from webhook.annotation import NETWORKS_ANNOTATION
from webhook.nads import NetworkAttachmentDefinition, StaticNadSource, load_nad_file
from webhook.profiles import Profiles, parse_profiles

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POOL_A = "intel.com/sriov_pf_a"
POOL_B = "intel.com/sriov_pf_b"
A1 = {"name": "sriov-pf-a", "interface": "net1"}
B2 = {"name": "sriov-pf-b", "interface": "net2"}
BOND0 = {"name": "bond-net", "interface": "bond0"}
BOND_CONFIG = {
    "cniVersion": "1.0.0",
    "name": "bond-net",
    "type": "bond",
    "mode": "active-backup",
    "failOverMac": 1,
    "linksInContainer": True,
    "miimon": "100",
    "links": [{"name": "net1"}, {"name": "net2"}],
}


# Pools and NADs for profiles of more than two legs, and a user's own network beside the bond.
MANY_POOLS = ("intel.com/sriov_pf_a", "intel.com/sriov_pf_b", "intel.com/sriov_pf_c",
              "intel.com/sriov_pf_d")  # fmt: skip
USER_POOL = "intel.com/sriov_data"
USER_NETWORK = {"name": "data-net", "interface": "data0"}


def many_legs_profiles(*counts: int) -> str:
    """Profiles YAML: `legs-N` bonds legs sriov-pf-a.. on net1..netN with bond-N on bond0."""
    lines = ["profiles:"]
    for n in counts:
        lines.append(f"  legs-{n}:")
        lines.append("    legs:")
        lines += [
            f"      - {{network: sriov-pf-{'abcd'[i]}, interface: net{i + 1}}}" for i in range(n)
        ]
        lines.append(f"    bond: {{network: bond-{n}, interface: bond0}}")
    return "\n".join(lines) + "\n"


def bond_config(legs: int) -> dict[str, Any]:
    links = [{"name": f"net{i + 1}"} for i in range(legs)]
    return {**BOND_CONFIG, "name": f"bond-{legs}", "links": links}


def many_legs_nads(namespace: str = "default") -> list[NetworkAttachmentDefinition]:
    """sriov-pf-a..d (one pool each), bond-3 and bond-4, and the user's data-net."""
    legs = [
        nad(f"sriov-pf-{'abcd'[i]}", pool, {"type": "sriov"}, namespace)
        for i, pool in enumerate(MANY_POOLS)
    ]
    bonds = [nad(f"bond-{n}", None, bond_config(n), namespace) for n in (3, 4)]
    return [*legs, *bonds, nad("data-net", USER_POOL, {"type": "sriov"}, namespace)]


def manifest(nad: NetworkAttachmentDefinition) -> dict[str, Any]:
    """The NAD as the object `kubectl apply` takes."""
    meta: dict[str, Any] = {"name": nad.name, "namespace": nad.namespace}
    if nad.resource_name is not None:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": nad.resource_name}
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": nad.config},
    }


def example_profiles() -> Profiles:
    return parse_profiles((EXAMPLES / "profiles.yaml").read_text())


def example_nads() -> list[NetworkAttachmentDefinition]:
    source = load_nad_file(EXAMPLES / "nads.yaml")
    return [
        nad
        for key in (("default", "sriov-pf-a"), ("default", "sriov-pf-b"), ("default", "bond-net"))
        if (nad := source.cached(*key))
    ]


def nad(
    name: str,
    resource: str | None = None,
    config: str | dict[str, Any] = "",
    namespace: str = "default",
) -> NetworkAttachmentDefinition:
    text = config if isinstance(config, str) else json.dumps(config)
    return NetworkAttachmentDefinition(namespace, name, resource, text)


def source(*extra: NetworkAttachmentDefinition, drop: tuple[str, ...] = ()) -> StaticNadSource:
    """The example NADs, minus `drop`, with `extra` replacing or adding."""
    nads = {n.key: n for n in example_nads() if n.name not in drop}
    nads.update({n.key: n for n in extra})
    return StaticNadSource(nads.values())


def pod(
    *,
    networks: str | list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "test-pod",
        "labels": {"bond": "true"} if labels is None else labels,
    }
    if namespace is not None:
        meta["namespace"] = namespace
    notes = dict(annotations or {})
    if networks is not None:
        notes[NETWORKS_ANNOTATION] = networks if isinstance(networks, str) else json.dumps(networks)
    if notes:
        meta["annotations"] = notes
    spec: dict[str, Any] = {"containers": containers or [{"name": "app", "image": "alpine"}]}
    if init_containers is not None:
        spec["initContainers"] = init_containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def expected(
    base: dict[str, Any],
    networks: list[dict[str, Any]] | None,
    resources: dict[str, Any] | None,
    container: int = 0,
) -> dict[str, Any]:
    """The reference result: a deep copy of the pod with the two subtrees set (None: unchanged)."""
    out = copy.deepcopy(base)
    if networks is not None:
        value = json.dumps(networks, separators=(",", ":"))
        out.setdefault("metadata", {}).setdefault("annotations", {})[NETWORKS_ANNOTATION] = value
    if resources is not None:
        out["spec"]["containers"][container]["resources"] = resources
    return out


def vfs(a: int = 1, b: int = 1, **other: Any) -> dict[str, Any]:
    """requests == limits with `a` VFs of pool A and `b` of pool B, plus other sections."""
    counts = {POOL_A: str(a), POOL_B: str(b)}
    out: dict[str, Any] = {"requests": dict(counts), "limits": dict(counts)}
    for key, value in other.items():
        if key in out:
            out[key] = {**value, **out[key]}
        else:
            out[key] = value
    return out
