"""Failover readiness: will this bond of VFs actually fail over? Decided from plain VF facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cni.core.options import BondOptions

# IFLA_VF_LINK_STATE_* values.
LINK_STATES = {0: "auto", 1: "enable", 2: "disable"}
_SHARED_MAC_MODES = ("balance-rr", "balance-xor", "802.3ad")


@dataclass(frozen=True)
class VfState:
    """What the PF says about one slave VF (netlink IFLA_VF_INFO on the PF, host netns)."""

    link: str
    pf: str  # the PF's interface name
    vf: int
    link_state: str  # auto | enable | disable
    trust: bool | None = None  # None: the driver does not report it
    spoofchk: bool | None = None


def _vf(v: VfState) -> str:
    return f"{v.link} (VF {v.vf} of {v.pf})"


def problems(options: BondOptions, vfs: Sequence[VfState]) -> list[str]:
    """One line per readiness problem, each naming the fix."""
    found = []
    for v in vfs:
        if v.link_state == "enable":
            found.append(
                f"{_vf(v)} has link state enable: it stays up when the port dies, so the bond"
                f" cannot see the failure; fix: ip link set {v.pf} vf {v.vf} state auto"
            )
        elif v.link_state == "disable":
            found.append(
                f"{_vf(v)} has link state disable: it never carries traffic;"
                f" fix: ip link set {v.pf} vf {v.vf} state auto"
            )
    if vfs and options.mode == "active-backup" and options.fail_over_mac != "active":
        found.append(
            f"active-backup over VFs without failOverMac: 1: VFs usually refuse the MAC change"
            f" on failover ({', '.join(v.link for v in vfs)}); fix: set failOverMac: 1"
        )
    if options.mode in _SHARED_MAC_MODES:
        for v in vfs:
            if v.trust is False:
                found.append(
                    f"{_vf(v)} has trust off: {options.mode} gives every slave the bond's MAC,"
                    f" which an untrusted VF refuses; fix: ip link set {v.pf} vf {v.vf} trust on"
                )
    if not options.miimon and not options.arp_interval:
        found.append(
            "miimon is 0 and ARP monitoring is off: nothing detects a failed link;"
            " fix: set miimon: 100 (or arpInterval with arpIpTargets)"
        )
    return found
