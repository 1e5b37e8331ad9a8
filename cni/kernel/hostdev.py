"""Plumbing for the NIC-diversity and failover-readiness checks: where each slave lives.

Every lookup degrades to "unknown" (veth, no sysfs, no PF in this netns): a check never fails
an ADD because it could not see the hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cni.core.diversity import SlaveDevice, resolve
from cni.core.errors import CNIError
from cni.core.hachecks import LINK_STATES, VfState
from cni.kernel.netlink import Link, Netns, VfInfo

log = logging.getLogger("cni.kernel.hostdev")


def slave_devices(links: Sequence[Link], sysfs: Path = Path("/sys")) -> list[SlaveDevice]:
    devices = []
    for link in links:
        try:
            devices.append(resolve(sysfs, link.name, link.parent_bus, link.parent_dev))
        except OSError as exc:
            log.info("cannot locate %s in %s: %s", link.name, sysfs, exc)
            devices.append(SlaveDevice(link.name))
    return devices


def vf_state(vfs: Sequence[VfInfo], device: SlaveDevice) -> VfState | None:
    """The slave's VF among what its PF reports, or None if the PF does not list it."""
    if device.vf_index is None or device.pf_netdev is None:
        return None
    for info in vfs:
        if info.vf != device.vf_index or info.link_state is None:
            continue
        return VfState(
            link=device.link,
            pf=device.pf_netdev,
            vf=device.vf_index,
            link_state=LINK_STATES.get(info.link_state, str(info.link_state)),
            trust=info.trust,
            spoofchk=info.spoofchk,
        )
    return None


def vf_states(devices: Sequence[SlaveDevice]) -> list[VfState]:
    """Read each VF's settings from its PF in this (the host's) netns."""
    vfs = [d for d in devices if d.is_vf and d.pf_netdev]
    if not vfs:
        return []
    states = []
    with Netns(None) as host:
        for device in vfs:
            assert device.pf_netdev is not None
            try:
                listed = host.vfs(device.pf_netdev)
            except CNIError as exc:
                log.info(
                    "cannot read VF info of %s from %s: %s %s",
                    device.link,
                    device.pf_netdev,
                    exc.msg,
                    exc.details,
                )
                continue
            state = vf_state(listed or (), device)
            if state is not None:
                states.append(state)
    return states
