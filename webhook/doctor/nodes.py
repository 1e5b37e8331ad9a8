"""The checks of the nodes' side, from plain objects: the device plugin's pools per NIC, the nodes
that advertise every pool of a profile, and the CNI DaemonSet ready on those nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook.doctor import sriovdp
from webhook.doctor.checks import ProfilePools
from webhook.doctor.report import Row, failed, passed, skipped, warned
from webhook.resources import parse_count


def device_plugin_rows(configs: Mapping[str, str], profiles: Sequence[ProfilePools]) -> list[Row]:
    """`configs`: the sriovdp-config ConfigMaps' config.json by namespace/name."""
    if not configs:
        return [
            skipped(
                "device-plugin",
                f"configmap {sriovdp.CONFIGMAP}",
                f"no {sriovdp.CONFIGMAP} ConfigMap in any namespace, so the pools' PFs are not "
                "checked here (the bond CNI's nicDiversity checks the VFs it gets on the node)",
            )
        ]
    rows: list[Row] = []
    for where, text in sorted(configs.items()):
        subject = f"configmap {where}"
        try:
            pools = sriovdp.parse_config(text, subject)
        except sriovdp.SriovdpError as exc:
            rows.append(
                failed(
                    "device-plugin",
                    subject,
                    str(exc),
                    "fix the device plugin's config; it advertises no pools while it is invalid",
                )
            )
            continue
        for profile in profiles:
            rows.append(_diversity_row(subject, profile, pools))
    return rows


def _diversity_row(subject: str, profile: ProfilePools, pools: Mapping[str, sriovdp.Pool]) -> Row:
    subject = f"{subject}, profile {profile.profile}"
    missing = [p for p in profile.pools if p not in pools]
    if missing:
        return warned(
            "device-plugin",
            subject,
            f"it defines no pool {', '.join(missing)} "
            f"(it has {', '.join(sorted(pools)) or 'none'})",
            "add a resourceList entry per pool (resourceName without the prefix, and "
            "resourcePrefix), each selecting the VFs of one PF",
        )
    fix = "select each pool from a PF of a different NIC (pfNames or rootDevices)"
    same_pf: list[str] = []
    same_nic: list[str] = []
    uncomparable = False
    for i, first in enumerate(profile.pools):
        for second in profile.pools[i + 1 :]:
            if first == second:
                continue
            found = sriovdp.overlap(pools[first], pools[second])
            uncomparable |= not found.comparable
            same_pf += [f"{first} and {second} both select {pf}" for pf in found.same_pf]
            same_nic += [
                f"{first} selects {x} and {second} selects {y}, two ports of one NIC"
                for x, y in found.same_nic
            ]
    if same_pf:
        return failed(
            "device-plugin", subject, "; ".join(same_pf) + ": both legs may get one PF's VFs", fix
        )
    if same_nic:
        return warned(
            "device-plugin",
            subject,
            "; ".join(same_nic) + ": losing that card takes both legs down",
            fix,
        )
    if uncomparable:
        return skipped(
            "device-plugin",
            subject,
            "the pools select by different kinds of selector (pfNames against PCI addresses, "
            "or vendor/driver only), so their NICs cannot be compared from the config",
        )
    return passed(
        "device-plugin",
        subject,
        f"pools {', '.join(profile.pools)} select PFs of different NICs",
    )


def nodes_with_pools(nodes: Sequence[Mapping[str, Any]], pools: Sequence[str]) -> list[str]:
    """Names of the nodes whose allocatable has at least one of every pool."""
    return [
        _name(node)
        for node in nodes
        if all((parse_count(_allocatable(node).get(p)) or 0) > 0 for p in pools)
    ]


def node_rows(nodes: Sequence[Mapping[str, Any]], profiles: Sequence[ProfilePools]) -> list[Row]:
    rows: list[Row] = []
    for profile in profiles:
        subject = f"profile {profile.profile}"
        both = nodes_with_pools(nodes, profile.pools)
        some = [
            _name(n)
            for n in nodes
            if _name(n) not in both
            and any((parse_count(_allocatable(n).get(p)) or 0) > 0 for p in profile.pools)
        ]
        partial = f"; only some of the pools on: {', '.join(some)}" if some else ""
        if not both:
            rows.append(
                failed(
                    "nodes",
                    subject,
                    f"no node advertises allocatable {' and '.join(profile.pools)}{partial}; "
                    "bonded pods stay Pending",
                    "run the SR-IOV device plugin on the SR-IOV nodes with one resourceList "
                    "entry per pool (kubectl get node NODE -o jsonpath='{.status.allocatable}')",
                )
            )
            continue
        cordoned = [
            _name(n) for n in nodes if _name(n) in both and n.get("spec", {}).get("unschedulable")
        ]
        not_ready = [_name(n) for n in nodes if _name(n) in both and not _node_ready(n)]
        note = f" (cordoned: {', '.join(cordoned)})" if cordoned else ""
        note += f" (not Ready: {', '.join(not_ready)})" if not_ready else ""
        rows.append(
            passed(
                "nodes",
                subject,
                f"{len(both)} node(s) advertise {' and '.join(profile.pools)}: "
                f"{', '.join(both)}{note}{partial}",
            )
        )
    return rows


def daemonset_rows(
    daemonset: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    nodes: Sequence[str],
) -> list[Row]:
    """The CNI installer must be ready on every node that has the pools (`nodes`)."""
    if daemonset is None:
        return [
            warned(
                "cni-daemonset",
                "bond CNI",
                "no CNI installer DaemonSet of this release (cniInstaller.enabled=false), so "
                "nothing here shows the bond plugin is on the nodes",
                "install `bond` in each node's CNI bin folder yourself, or set "
                "cniInstaller.enabled=true",
            )
        ]
    meta = daemonset.get("metadata") or {}
    subject = f"daemonset {meta.get('namespace')}/{meta.get('name')}"
    by_node: dict[str, Mapping[str, Any]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            by_node[str(node)] = pod
    absent = [n for n in nodes if n not in by_node]
    unready = [
        f"{n} (pod {_name(by_node[n])}: {_unready(by_node[n])})"
        for n in nodes
        if n in by_node and not pod_ready(by_node[n])
    ]
    if not absent and not unready:
        return [
            passed("cni-daemonset", subject, f"ready on all {len(nodes)} node(s) with the pools")
        ]
    rows: list[Row] = []
    if absent:
        rows.append(
            failed(
                "cni-daemonset",
                subject,
                f"no pod on {', '.join(absent)}, which have the pools: the bond plugin is not "
                "installed there and bonded pods fail at sandbox creation",
                "widen cniInstaller.nodeSelector / tolerations, or label the nodes "
                "feature.node.kubernetes.io/network-sriov.capable=true",
            )
        )
    if unready:
        rows.append(
            failed(
                "cni-daemonset",
                subject,
                f"not ready on {', '.join(unready)}",
                f"kubectl -n {meta.get('namespace')} describe pod POD; kubectl logs POD "
                "(the installer, or the helper's probe)",
            )
        )
    return rows


def _node_ready(node: Mapping[str, Any]) -> bool:
    return pod_ready(node)  # a Node's Ready condition has the same shape as a Pod's


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _unready(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("reason") or c.get("message") or "Ready is " + str(c.get("status")))
    return str(status.get("phase") or "no status")


def _allocatable(node: Mapping[str, Any]) -> Mapping[str, Any]:
    return (node.get("status") or {}).get("allocatable") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))
