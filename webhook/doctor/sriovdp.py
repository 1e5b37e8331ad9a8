"""The SR-IOV network device plugin's config (ConfigMap `sriovdp-config`, key `config.json`): which
PFs each pool draws its VFs from, and whether two pools can end up on one NIC.

Only the selectors that name hardware are read: `pfNames` (a PF's netdev name, optionally with
`#0-3` VF ranges), `rootDevices` (a PF's PCI address) and `pciAddresses` (devices' PCI
addresses). Two PCI functions of one bus/device are ports of one card; for names we rely on the
predictable `...f<function>` suffix (enp59s0f0, ens785f1np1), which is what the kernel gives PFs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONFIGMAP = "sriovdp-config"
CONFIG_KEY = "config.json"
DEFAULT_PREFIX = "intel.com"  # the device plugin's --resource-prefix default
_PCI = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")
_PF_NAME = re.compile(r"^(?P<stem>.+?)f(?P<function>\d+)(?:np\d+)?$")


class SriovdpError(ValueError):
    """The device plugin's config cannot be read; the message names the field."""


@dataclass(frozen=True)
class Pool:
    resource: str  # prefix/name, as in a NAD's resourceName annotation
    pf_names: tuple[str, ...]
    pci: tuple[str, ...]  # rootDevices and pciAddresses, normalised to DDDD:BB:DD.F


def parse_config(text: str, where: str = f"configmap {CONFIGMAP}") -> dict[str, Pool]:
    """Pools by full resource name (prefix/name)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SriovdpError(f"{where}: {CONFIG_KEY} is not valid JSON ({exc.msg})") from None
    resources = doc.get("resourceList") if isinstance(doc, dict) else None
    if not isinstance(resources, list):
        raise SriovdpError(f"{where}: {CONFIG_KEY} has no resourceList list")
    pools: dict[str, Pool] = {}
    for index, entry in enumerate(resources):
        if not isinstance(entry, dict) or not isinstance(entry.get("resourceName"), str):
            raise SriovdpError(f"{where}: resourceList[{index}] has no resourceName")
        prefix = entry.get("resourcePrefix") or DEFAULT_PREFIX
        resource = f"{prefix}/{entry['resourceName']}"
        raw = entry.get("selectors") or {}
        selectors = raw if isinstance(raw, list) else [raw]  # v3.5+ allows a list of them
        names: list[str] = []
        pci: list[str] = []
        for selector in selectors:
            if not isinstance(selector, Mapping):
                continue
            names += [str(n).split("#", 1)[0] for n in _strings(selector, "pfNames")]
            for key in ("rootDevices", "pciAddresses"):
                pci += [_normalise(address) for address in _strings(selector, key)]
        pools[resource] = Pool(resource, tuple(names), tuple(pci))
    return pools


def _strings(selector: Mapping[str, Any], key: str) -> list[str]:
    value = selector.get(key) or []
    return [str(v) for v in value] if isinstance(value, list) else []


def _normalise(address: str) -> str:
    match = _PCI.match(address.strip())
    if match is None:
        return address.strip()
    domain, bus, device, function = match.groups()
    return f"{(domain or '0000').lower()}:{bus.lower()}:{device.lower()}.{function}"


def _card(address: str) -> str | None:
    """DDDD:BB:DD of a PCI address: the slot all ports of one card share."""
    return address.rsplit(".", 1)[0] if _PCI.match(address) else None


def _name_card(name: str) -> str | None:
    match = _PF_NAME.match(name)
    return match.group("stem") if match else None


@dataclass(frozen=True)
class Overlap:
    same_pf: tuple[str, ...]  # PFs (names or addresses) both pools select
    same_nic: tuple[tuple[str, str], ...]  # different PFs on one card
    comparable: bool  # False: the pools name hardware in ways that cannot be compared


def overlap(a: Pool, b: Pool) -> Overlap:
    """What two pools share: a PF, or a NIC (two ports of one card)."""
    same_pf = sorted((set(a.pf_names) & set(b.pf_names)) | (set(a.pci) & set(b.pci)))
    same_nic: list[tuple[str, str]] = []
    for left, right, card in (
        (a.pci, b.pci, _card),
        (a.pf_names, b.pf_names, _name_card),
    ):
        for x in left:
            for y in right:
                if x != y and card(x) is not None and card(x) == card(y):
                    same_nic.append((x, y))
    comparable = bool((a.pci and b.pci) or (a.pf_names and b.pf_names))
    return Overlap(tuple(same_pf), tuple(sorted(set(same_nic))), comparable)
