"""Plumbing for the NIC-diversity and failover-readiness checks: where each slave lives.

Every lookup degrades to "unknown" (veth, no sysfs, no PF in this netns): a check never fails
an ADD because it could not see the hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cni.core.diversity import SlaveDevice, resolve
from cni.core.hachecks import LINK_STATES, VfState
from cni.kernel.netlink import Link

log = logging.getLogger("cni.kernel.hostdev")
RTEXT_FILTER_VF = 1


def slave_devices(links: Sequence[Link], sysfs: Path = Path("/sys")) -> list[SlaveDevice]:
    devices = []
    for link in links:
        try:
            devices.append(resolve(sysfs, link.name, link.parent_bus, link.parent_dev))
        except OSError as exc:
            log.info("cannot locate %s in %s: %s", link.name, sysfs, exc)
            devices.append(SlaveDevice(link.name))
    return devices


def vf_state_from_msg(msg: Any, device: SlaveDevice) -> VfState | None:
    """The VF's state from the PF's RTM_NEWLINK (IFLA_VFINFO_LIST), or None if not listed."""
    vflist = msg.get_attr("IFLA_VFINFO_LIST")
    if vflist is None or device.vf_index is None or device.pf_netdev is None:
        return None
    for info in vflist.get_attrs("IFLA_VF_INFO"):
        state = info.get_attr("IFLA_VF_LINK_STATE")
        if state is None or state["vf"] != device.vf_index:
            continue
        trust = info.get_attr("IFLA_VF_TRUST")
        spoofchk = info.get_attr("IFLA_VF_SPOOFCHK")
        return VfState(
            link=device.link,
            pf=device.pf_netdev,
            vf=device.vf_index,
            link_state=LINK_STATES.get(state["link_state"], str(state["link_state"])),
            trust=None if trust is None else bool(trust["trust"]),
            spoofchk=None if spoofchk is None else bool(spoofchk["spoofchk"]),
        )
    return None


def vf_states(devices: Sequence[SlaveDevice]) -> list[VfState]:
    """Read each VF's settings from its PF in this (the host's) netns."""
    vfs = [d for d in devices if d.is_vf and d.pf_netdev]
    if not vfs:
        return []
    from pyroute2.iproute.linux import IPRoute  # noqa: PLC0415
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    states = []
    with IPRoute() as ipr:
        for device in vfs:
            try:
                msg = ipr.link("get", ifname=device.pf_netdev, ext_mask=RTEXT_FILTER_VF)[0]
            except NetlinkError as exc:
                log.info(
                    "cannot read VF info of %s from %s: %s", device.link, device.pf_netdev, exc
                )
                continue
            state = vf_state_from_msg(msg, device)
            if state is not None:
                states.append(state)
    return states
