"""What the webhook checks in the bond NAD's CNI config so the bond does not fail on the node."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webhook.nads import NetworkAttachmentDefinition


@dataclass(frozen=True)
class BondCheck:
    problem: str | None  # a denial: the bond CNI would fail with this config
    warnings: tuple[str, ...] = ()


def check_bond_config(nad_ref: str, config: str, leg_interfaces: list[str]) -> BondCheck:
    """Check a bond NAD's spec.config text (the chart tests use this on rendered NADs)."""
    try:
        decoded = json.loads(config) if config else None
    except json.JSONDecodeError as exc:
        return _check(nad_ref, None, exc.msg, leg_interfaces)
    return _check(nad_ref, decoded, None, leg_interfaces)


def check_bond_nad(
    nad_ref: str, nad: NetworkAttachmentDefinition, leg_interfaces: list[str]
) -> BondCheck:
    """The same check on a stored NAD, whose config was decoded once (the hot path)."""
    return _check(nad_ref, nad.config_json, nad.config_error, leg_interfaces)


def _check(nad_ref: str, conf: Any, error: str | None, leg_interfaces: list[str]) -> BondCheck:
    """The bond plugin's `links` must equal the legs, and it must look for them in the pod."""
    if error is not None:
        return BondCheck(f"{nad_ref}: spec.config is not valid JSON ({error}); fix the NAD")
    bond = _find_bond_plugin(conf)
    if bond is None:
        return BondCheck(
            f"{nad_ref}: spec.config has no plugin of type 'bond'; point the profile's bond at a "
            "bond NAD"
        )
    links_raw = bond.get("links")
    links = (
        [link.get("name") if isinstance(link, dict) else link for link in links_raw]
        if isinstance(links_raw, list)
        else None
    )
    if links != leg_interfaces:
        return BondCheck(
            f"{nad_ref}: spec.config links {links} do not match the profile's leg interfaces "
            f"{leg_interfaces}; the bond would fail on the node. Set links to "
            f"{[{'name': i} for i in leg_interfaces]} or change the profile"
        )
    if bond.get("linksInContainer") is not True:
        return BondCheck(
            f"{nad_ref}: spec.config has linksInContainer {bond.get('linksInContainer')!r}; the "
            'links are VFs inside the pod, so set "linksInContainer": true'
        )
    warnings: list[str] = []
    mode = bond.get("mode")
    fail_over_mac = bond.get("failOverMac", 0)
    if mode == "active-backup" and fail_over_mac != 1:
        warnings.append(
            f'{nad_ref}: active-backup over SR-IOV VFs needs "failOverMac": 1 (VFs usually '
            f"refuse MAC changes); it is {fail_over_mac!r}"
        )
    return BondCheck(None, tuple(warnings))


def _find_bond_plugin(conf: Any) -> dict[str, Any] | None:
    if not isinstance(conf, dict):
        return None
    if conf.get("type") == "bond":
        return conf
    plugins = conf.get("plugins")
    if isinstance(plugins, list):
        for plugin in plugins:
            if isinstance(plugin, dict) and plugin.get("type") == "bond":
                return plugin
    return None
