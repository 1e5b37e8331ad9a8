"""The cluster checks, from plain objects: the profiles' NADs, their pools, the bond's config, the
device plugin's pools, the nodes that advertise them and the CNI DaemonSet on those nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni.core.config import parse as parse_bond_config
from cni.core.errors import CNIError
from webhook.bondconfig import check_bond_nad
from webhook.doctor import sriovdp
from webhook.doctor.report import Row, failed, passed, skipped, warned
from webhook.nads import RESOURCE_NAME_ANNOTATION, NetworkAttachmentDefinition
from webhook.profiles import Attachment, BondProfile, Profiles
from webhook.resources import parse_count

NadLookup = Callable[[str, str], NetworkAttachmentDefinition | None]


@dataclass(frozen=True)
class ProfilePools:
    """A profile whose legs all have pools, in leg order (what nodes must advertise)."""

    profile: str
    pools: tuple[str, ...]


def nad_key(att: Attachment, namespace: str) -> tuple[str, str]:
    """Where the webhook looks the attachment up: its namespace, else the pod's."""
    return (att.namespace or namespace, att.name)


def profile_rows(
    profiles: Profiles, namespace: str, lookup: NadLookup
) -> tuple[list[Row], list[ProfilePools]]:
    rows: list[Row] = []
    usable: list[ProfilePools] = []
    for profile in profiles.profiles.values():
        found, pools = _legs(profile, namespace, lookup, rows)
        rows += _bond(profile, namespace, lookup)
        if found and len(pools) == len(profile.legs):
            rows.append(_pools_row(profile, pools))
            usable.append(ProfilePools(profile.name, tuple(pools)))
    return rows, usable


def _subject(profile: BondProfile, att: Attachment, namespace: str) -> str:
    ns, name = nad_key(att, namespace)
    return f"profile {profile.name}: {ns}/{name} ({att.interface})"


def _resolved(att: Attachment, namespace: str) -> str:
    if att.namespace:
        return ""
    return f" (the profile names no namespace: resolved in {namespace}, the pod's namespace)"


def _legs(
    profile: BondProfile, namespace: str, lookup: NadLookup, rows: list[Row]
) -> tuple[bool, list[str]]:
    all_found = True
    pools: list[str] = []
    for leg in profile.legs:
        subject = _subject(profile, leg, namespace)
        ns, name = nad_key(leg, namespace)
        nad = lookup(ns, name)
        if nad is None:
            all_found = False
            rows.append(
                failed(
                    "nad",
                    subject,
                    f"network-attachment-definition {ns}/{name} does not exist"
                    f"{_resolved(leg, namespace)}; the webhook denies every pod of this profile",
                    f"create it in {ns} (the chart does with networks.create=true), or point the "
                    "profile's leg at an existing NAD as namespace/name",
                )
            )
            continue
        rows.append(passed("nad", subject, f"network-attachment-definition {ns}/{name} exists"))
        if nad.resource_name is None:
            rows.append(
                failed(
                    "resource-name",
                    subject,
                    f"network-attachment-definition {ns}/{name} has no {RESOURCE_NAME_ANNOTATION} "
                    "annotation, so no VF pool is requested for this leg",
                    f"kubectl annotate network-attachment-definition -n {ns} {name} "
                    f"{RESOURCE_NAME_ANNOTATION}=<prefix>/<pool of one NIC>",
                )
            )
            continue
        pools.append(nad.resource_name)
        rows.append(passed("resource-name", subject, f"pool {nad.resource_name}"))
        link_state = _leg_plugin(nad.config_json).get("link_state")
        if link_state is not None and link_state != "auto":
            rows.append(
                warned(
                    "leg-config",
                    subject,
                    f"the VF's link_state is {link_state!r}: it does not follow its PF, so when "
                    "the port or cable dies the VF stays up and the bond does not fail over",
                    'set "link_state": "auto" in the NAD (chart: networks.legs.*.linkState)',
                )
            )
    return all_found, pools


def _pools_row(profile: BondProfile, pools: Sequence[str]) -> Row:
    subject = f"profile {profile.name}"
    repeated = sorted({p for p in pools if pools.count(p) > 1})
    if not repeated:
        return passed("pools", subject, f"each leg has its own pool: {', '.join(pools)}")
    text = (
        f"legs {', '.join(leg.interface for leg in profile.legs)} share pool "
        f"{', '.join(repeated)}, so two VFs may come from one PF"
    )
    fix = "give each leg a NAD whose resourceName is a pool of a different NIC"
    if profile.require_distinct_pools:
        return failed("pools", subject, f"{text}; the webhook denies these pods", fix)
    return warned("pools", subject, f"{text} (requireDistinctPools is false)", fix)


def _bond(profile: BondProfile, namespace: str, lookup: NadLookup) -> list[Row]:
    bond = profile.bond
    subject = _subject(profile, bond, namespace)
    ns, name = nad_key(bond, namespace)
    ref = f"network-attachment-definition {ns}/{name}"
    nad = lookup(ns, name)
    if nad is None:
        return [
            failed(
                "nad",
                subject,
                f"{ref} does not exist{_resolved(bond, namespace)}; the webhook denies every pod "
                "of this profile",
                f"create the bond NAD in {ns}, or fix the profile's bond network",
            )
        ]
    rows = [passed("nad", subject, f"{ref} exists")]
    fix = f"edit {ref}'s spec.config (kubectl edit network-attachment-definition -n {ns} {name})"
    check = check_bond_nad(ref, nad, [leg.interface for leg in profile.legs])
    if check.problem is not None:
        return [*rows, failed("bond-config", subject, check.problem, fix)]
    try:
        parse_bond_config(_bond_plugin_conf(nad.config_json), bond.interface)
    except CNIError as exc:
        return [
            *rows,
            failed(
                "bond-config",
                subject,
                f"{ref}: the bond CNI refuses this config on the node: {exc.msg}",
                fix,
            ),
        ]
    rows += [warned("bond-config", subject, text, fix) for text in check.warnings]
    if not check.warnings:
        rows.append(passed("bond-config", subject, "links match the legs; the bond CNI accepts it"))
    return rows


def _leg_plugin(conf: Any) -> Mapping[str, Any]:
    """The leg's main plugin config: the object itself, or a conflist's first plugin."""
    if not isinstance(conf, dict):
        return {}
    plugins = conf.get("plugins")
    if isinstance(plugins, list) and plugins and isinstance(plugins[0], dict):
        return dict(plugins[0])
    return conf


def _bond_plugin_conf(conf: Any) -> Mapping[str, Any]:
    """The object the bond plugin gets on stdin: in a conflist, its entry with the list's
    cniVersion and name, as libcni (and so Multus) passes it."""
    plugins = conf.get("plugins") if isinstance(conf, dict) else None
    if isinstance(plugins, list):
        for plugin in plugins:
            if isinstance(plugin, dict) and plugin.get("type") == "bond":
                return {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), **plugin}
    return conf if isinstance(conf, dict) else {}


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
