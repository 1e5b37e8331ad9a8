"""NIC diversity: do the slaves sit on different PFs and different NICs?

Decided from a sysfs tree (the root is a parameter, so tests build one in a temp dir): a VF's
`physfn` link names its PF, and PFs that differ only in the PCI function are one NIC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SlaveDevice:
    """Where a slave link lives in the PCI tree; `pci` None means unknown (veth, virtual)."""

    link: str
    pci: str | None = None
    pf: str | None = None  # the PF's PCI address (the device itself when it is not a VF)
    vf_index: int | None = None  # set when the link is an SR-IOV VF
    pf_netdev: str | None = None  # the PF's interface name in the host

    @property
    def nic(self) -> str | None:
        """The PCI device (domain:bus:device) without the function: one physical card."""
        return self.pf.rsplit(".", 1)[0] if self.pf else None

    @property
    def is_vf(self) -> bool:
        return self.vf_index is not None


def resolve(sysfs: Path, link: str, bus: str | None, parent: str | None) -> SlaveDevice:
    """Locate `link` from its parent device (IFLA_PARENT_DEV_BUS_NAME / _NAME) under `sysfs`."""
    if bus != "pci" or not parent:
        return SlaveDevice(link)
    device = sysfs / "bus" / "pci" / "devices" / parent
    if not device.exists():
        return SlaveDevice(link)
    physfn = device / "physfn"
    if not physfn.exists():
        return SlaveDevice(link, parent, parent, None, _netdev(device))
    pf_dir = physfn.resolve()
    pf = pf_dir.name
    return SlaveDevice(link, parent, pf, _vf_index(pf_dir, parent), _netdev(pf_dir))


def _vf_index(pf_dir: Path, vf: str) -> int | None:
    for entry in pf_dir.glob("virtfn*"):
        if os.path.basename(os.readlink(entry)) == vf:
            return int(entry.name.removeprefix("virtfn"))
    return None


def _netdev(device: Path) -> str | None:
    try:
        names = sorted(os.listdir(device / "net"))
    except OSError:
        return None
    return names[0] if names else None


def problems(devices: Sequence[SlaveDevice]) -> list[str]:
    """One line per pair of slaves that share a PF or a NIC, each with the fix."""
    found = []
    known = [d for d in devices if d.pf]
    for i, a in enumerate(known):
        for b in known[i + 1 :]:
            if a.pf == b.pf:
                found.append(
                    f"{a.link} and {b.link} share PF {a.pf}: one port failure takes both legs down;"
                    " fix: allocate them from device-plugin pools on different PFs"
                )
            elif a.nic == b.nic:
                found.append(
                    f"{a.link} (PF {a.pf}) and {b.link} (PF {b.pf}) sit on the same NIC {a.nic}:"
                    " one card failure takes both legs down; fix: use pools on different NICs"
                )
    return found


def unknown(devices: Sequence[SlaveDevice]) -> list[str]:
    return [d.link for d in devices if d.pci is None]
