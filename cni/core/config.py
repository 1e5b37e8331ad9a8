"""The bond network config: parse and validate every field before the kernel is touched.

Field names and meanings follow k8snetworkplumbingwg/bond-cni so its configs work unchanged;
the extra options are the bonding driver's own, under camelCase names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni.core.errors import invalid
from cni.core.ifname import ifname_problem
from cni.core.options import (
    AD_SELECT,
    ARP_ALL_TARGETS,
    ARP_VALIDATE,
    FAIL_OVER_MAC,
    LACP_RATE,
    MODES,
    POLICIES,
    PRIMARY_RESELECT,
    XMIT_HASH_POLICY,
    BondOptions,
)
from cni.core.records import DEFAULT_DIR, check_dir

# The one folder `logFile` may name a file in. The helper runs requests from any root process that
# reaches its socket: a logFile anywhere would let one append to any file of the node.
LOG_DIR = "/var/log/bond-cni"
_LOG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_TLB_ALB = ("balance-tlb", "balance-alb")
_NO_ARP_MODES = ("802.3ad", *_TLB_ALB)
_MAX_ARP_TARGETS = 16
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class BondConfig:
    cni_version: str
    name: str
    links: tuple[str, ...]
    options: BondOptions
    links_in_container: bool = True
    mtu: int | None = None
    mac: str | None = None
    ipam: Mapping[str, Any] | None = None
    dns: Mapping[str, Any] | None = None
    nic_diversity: str = "warn"
    ha_checks: str = "warn"
    log_file: str | None = None
    attachments_dir: str = DEFAULT_DIR
    prev_result: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _enum(raw: Mapping[str, Any], key: str, table: Mapping[str, int]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    allowed = ", ".join(table) + f" (or {min(table.values())}-{max(table.values())})"
    if isinstance(value, str) and value in table:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in table.items():
            if number == value:
                return name
    raise invalid(key, f"{value!r} is not a known value", allowed)


def _int(raw: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    """An integer field; a decimal string is accepted too (bond-cni's miimon is a string)."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise invalid(key, f"{value!r} is not an integer in {lo}..{hi}")
    return value


def _flag(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if value in (0, 1) or isinstance(value, bool):
        return int(value)
    raise invalid(key, f"{value!r} is not a flag", "0, 1, false, true")


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise invalid(key, f"{value!r} is not a boolean", "true, false")
    return value


def _policy(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key, "warn")
    if value not in POLICIES:
        raise invalid(key, f"{value!r} is not a policy", ", ".join(POLICIES))
    return str(value)


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, dict):
        raise invalid(key, "must be a JSON object")
    return value


def _links(raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("links")
    if not isinstance(value, list) or len(value) < 2:
        raise invalid("links", 'needs two or more entries like {"name": "net1"}')
    names = []
    for entry in value:
        name = entry.get("name") if isinstance(entry, dict) else None
        if (problem := ifname_problem(name)) is not None:
            raise invalid("links", f"{entry!r}: the interface name {problem}")
        names.append(str(name))
    if len(set(names)) != len(names):
        raise invalid("links", f"names must be unique, got {names}")
    return tuple(names)


def _mac(raw: Mapping[str, Any]) -> str | None:
    runtime = _object(raw, "runtimeConfig") or {}
    value = runtime.get("mac")
    if value is None:
        return None
    if not isinstance(value, str) or not _MAC.match(value):
        raise invalid("runtimeConfig.mac", f"{value!r} is not a MAC like 02:00:00:00:00:01")
    first = int(value[:2], 16)
    if first & 1 or value.replace(":", "").strip("0") == "":
        raise invalid("runtimeConfig.mac", f"{value} is not a unicast address")
    return value.lower()


def _arp_targets(raw: Mapping[str, Any]) -> tuple[str, ...]:
    value = raw.get("arpIpTargets", [])
    if not isinstance(value, list) or len(value) > _MAX_ARP_TARGETS:
        raise invalid(
            "arpIpTargets", f"must be a list of at most {_MAX_ARP_TARGETS} IPv4 addresses"
        )
    for target in value:
        try:
            address = ipaddress.IPv4Address(target)
        except (ValueError, TypeError) as exc:
            raise invalid("arpIpTargets", f"{target!r} is not an IPv4 address") from exc
        if address.is_unspecified or address == ipaddress.IPv4Address("255.255.255.255"):
            raise invalid("arpIpTargets", f"{target} cannot be an ARP target")
    return tuple(str(t) for t in value)


def _primary(raw: Mapping[str, Any], links: tuple[str, ...]) -> str | None:
    value = raw.get("primary")
    if value is not None and value not in links:
        raise invalid("primary", f"{value!r} is not one of the links", ", ".join(links))
    return value if value is None else str(value)


def _options(raw: Mapping[str, Any], links: tuple[str, ...]) -> BondOptions:
    mode = _enum(raw, "mode", MODES) or "balance-rr"
    arp_interval = _int(raw, "arpInterval", 0, 2**31 - 1)
    arp_on = bool(arp_interval)
    miimon = _int(raw, "miimon", 0, 2**31 - 1)
    if arp_on and miimon:
        raise invalid(
            "miimon", "MII and ARP monitoring exclude each other; set one of miimon, arpInterval"
        )
    miimon = (0 if arp_on else 100) if miimon is None else miimon
    opts = BondOptions(
        mode=mode,
        miimon=miimon,
        fail_over_mac=_enum(raw, "failOverMac", FAIL_OVER_MAC),
        all_slaves_active=_flag(raw, "allSlavesActive"),
        tlb_dynamic_lb=_flag(raw, "tlbDynamicLb"),
        xmit_hash_policy=_enum(raw, "xmitHashPolicy", XMIT_HASH_POLICY),
        lacp_rate=_enum(raw, "lacpRate", LACP_RATE),
        arp_interval=arp_interval,
        arp_ip_targets=_arp_targets(raw),
        arp_validate=_enum(raw, "arpValidate", ARP_VALIDATE),
        arp_all_targets=_enum(raw, "arpAllTargets", ARP_ALL_TARGETS),
        primary=_primary(raw, links),
        primary_reselect=_enum(raw, "primaryReselect", PRIMARY_RESELECT),
        updelay=_int(raw, "updelay", 0, 2**31 - 1),
        downdelay=_int(raw, "downdelay", 0, 2**31 - 1),
        min_links=_int(raw, "minLinks", 0, 2**31 - 1),
        ad_select=_enum(raw, "adSelect", AD_SELECT),
    )
    _check_mode_dependencies(opts)
    return opts


def _only_in(key: str, value: object, mode: str, modes: tuple[str, ...]) -> None:
    if value is not None and mode not in modes:
        raise invalid(key, f"is not supported in mode {mode}", "modes " + ", ".join(modes))


def _check_mode_dependencies(o: BondOptions) -> None:
    """The kernel's own mode dependencies (bond_options.c unsuppmodes), checked up front."""
    _only_in("tlbDynamicLb", o.tlb_dynamic_lb, o.mode, _TLB_ALB)
    _only_in("lacpRate", o.lacp_rate, o.mode, ("802.3ad",))
    _only_in("adSelect", o.ad_select, o.mode, ("802.3ad",))
    _only_in("primary", o.primary, o.mode, ("active-backup", *_TLB_ALB))
    arp_modes = tuple(m for m in MODES if m not in _NO_ARP_MODES)
    _only_in("arpInterval", o.arp_interval or None, o.mode, arp_modes)
    _only_in("arpValidate", o.arp_validate, o.mode, arp_modes)
    if o.arp_interval and not o.arp_ip_targets:
        raise invalid("arpIpTargets", "arpInterval needs at least one target")
    if o.arp_ip_targets and not o.arp_interval:
        raise invalid("arpInterval", "arpIpTargets needs arpInterval > 0")
    for key, delay in (("updelay", o.updelay), ("downdelay", o.downdelay)):
        if delay and (not o.miimon or delay % o.miimon):
            raise invalid(key, f"{delay} must be a multiple of miimon ({o.miimon}) and miimon > 0")


def _mtu(raw: Mapping[str, Any]) -> int | None:
    if raw.get("mtu") in (0, "0"):
        return None  # bond-cni's "not set"
    return _int(raw, "mtu", 68, 65535)


def parse(data: Mapping[str, Any], ifname: str | None = None) -> BondConfig:
    """A validated BondConfig from the decoded stdin object; raises error 7 naming the field."""
    version = data.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise invalid("cniVersion", f"{version!r} is not a string")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise invalid("name", f"{name!r} is not a string")
    links = _links(data)
    if ifname is not None and ifname in links:
        raise invalid("links", f"{ifname!r} is CNI_IFNAME, the bond itself; it cannot be a slave")
    links_in_container = _bool(data, "linksInContainer", True)
    if not links_in_container and not _bool(data, "allowHostLinks", False):
        raise invalid(
            "linksInContainer",
            "false moves host interfaces into the pod; set allowHostLinks: true to allow it",
        )
    ipam = _object(data, "ipam")
    if ipam:
        ipam_type = ipam.get("type")
        if (
            not isinstance(ipam_type, str)
            or not ipam_type
            or "/" in ipam_type
            or ipam_type == "bond"
        ):
            raise invalid("ipam.type", f"{ipam_type!r} is not an IPAM plugin name")
    log_file = data.get("logFile")
    if log_file is not None and not _in_log_dir(log_file):
        raise invalid(
            "logFile",
            f"{log_file!r} is not a file directly in {LOG_DIR}",
            f"a file name in {LOG_DIR}, e.g. {LOG_DIR}/bond.log (the only folder logs go to)",
        )
    options = _options(data, links)
    mac = _mac(data)
    if mac and options.mode == "active-backup" and options.fail_over_mac == "active":
        raise invalid(
            "runtimeConfig.mac",
            "has no effect with failOverMac: 1, where the bond takes the active slave's MAC",
        )
    return BondConfig(
        cni_version=version,
        name=name,
        links=links,
        options=options,
        links_in_container=links_in_container,
        mtu=_mtu(data),
        mac=mac,
        ipam=ipam or None,
        dns=_object(data, "dns"),
        nic_diversity=_policy(data, "nicDiversity"),
        ha_checks=_policy(data, "haChecks"),
        log_file=log_file,
        attachments_dir=check_dir(data.get("attachmentsDir", DEFAULT_DIR)),
        prev_result=_object(data, "prevResult"),
        raw=data,
    )


def _in_log_dir(path: object) -> bool:
    """True for LOG_DIR/<name>: one plain file name, no "..", no sub-folder."""
    if not isinstance(path, str):
        return False
    folder, _, name = path.rpartition("/")
    return folder == LOG_DIR and bool(_LOG_NAME.match(name)) and name not in (".", "..")
