"""The profile checks, from plain objects: the profiles' NADs, their pools, the legs' VF settings
and the bond's config (through the bond CNI's own parser)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni.core.config import parse as parse_bond_config
from cni.core.errors import CNIError
from webhook.bondconfig import check_bond_nad
from webhook.doctor.report import Row, failed, passed, warned
from webhook.nads import RESOURCE_NAME_ANNOTATION, NetworkAttachmentDefinition
from webhook.profiles import Attachment, BondProfile, Profiles

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
