"""Failover readiness decisions, and reading VF facts out of a PF's netlink message.

No VF-capable device exists in our VMs (Debian's kernel has no netdevsim): the RTM_NEWLINK
messages below are built with pyroute2's own ifinfmsg class (the tests' independent codec) and
stand in for the hardware; cni.kernel.rtnl reads them.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from cni.core import config, hachecks, options
from cni.core.diversity import SlaveDevice
from cni.core.errors import INVALID_CONFIG, CNIError, apply_policy
from cni.core.hachecks import VfState
from cni.kernel import hostdev, rtnl
from cni.kernel.netlink import Netns
from tests.cni.conftest import bond_config


def _opts(**fields: Any) -> options.BondOptions:
    return config.parse(bond_config(**fields)).options


def _vf(link_state: str = "auto", trust: bool | None = True, link: str = "net1") -> VfState:
    return VfState(link, "ens1f0", 3, link_state, trust, False)


@pytest.mark.parametrize(
    ("options", "vfs", "expected"),
    [
        ({"mode": "active-backup", "failOverMac": 1}, [_vf(), _vf(link="net2")], []),
        ({"mode": "active-backup", "failOverMac": 1}, [_vf("enable")], ["state auto"]),
        ({"mode": "active-backup", "failOverMac": 1}, [_vf("disable")], ["link state disable"]),
        ({"mode": "active-backup"}, [_vf()], ["failOverMac: 1"]),
        ({"mode": "active-backup", "failOverMac": "follow"}, [_vf()], ["failOverMac: 1"]),
        ({"mode": "active-backup"}, [], []),  # veth: no VFs, the MAC rule does not apply
        ({"mode": "balance-rr"}, [_vf(trust=False)], ["trust on"]),
        ({"mode": "balance-xor"}, [_vf(trust=False)], ["trust on"]),
        ({"mode": "802.3ad"}, [_vf(trust=False)], ["trust on"]),
        ({"mode": "802.3ad"}, [_vf(trust=None)], []),
        ({"mode": "balance-tlb"}, [_vf(trust=False)], []),
        ({"mode": "balance-rr", "miimon": 0}, [], ["nothing detects"]),
        ({"mode": "active-backup", "arpInterval": 100, "arpIpTargets": ["192.0.2.1"]}, [], []),
        (
            {"mode": "balance-rr", "miimon": 0},
            [_vf("enable", False)],
            ["state auto", "trust on", "nothing detects"],
        ),
    ],
)
def test_problems(options: dict[str, object], vfs: list[VfState], expected: list[str]) -> None:
    found = hachecks.problems(_opts(**options), vfs)
    assert len(found) == len(expected)
    for line, fragment in zip(found, expected, strict=True):
        assert fragment in line and "fix:" in line and "\n" not in line


def test_policy() -> None:
    assert apply_policy("haChecks", "off", ["x"]) == []
    assert apply_policy("haChecks", "warn", ["x"]) == ["x"]
    with pytest.raises(CNIError) as caught:
        apply_policy("haChecks", "enforce", ["x", "y"])
    assert caught.value.code == INVALID_CONFIG and "x; y" in caught.value.msg


def _pf_message(vfs: list[tuple[int, int, int, int]]) -> bytes:
    """The payload of an RTM_NEWLINK for a PF carrying IFLA_VFINFO_LIST, as the kernel sends it,
    encoded by pyroute2 (an independent codec) for cni.kernel.rtnl to read."""
    infos = [
        {
            "attrs": [
                ("IFLA_VF_MAC", {"vf": vf, "mac": f"02:00:00:00:00:0{vf}"}),
                ("IFLA_VF_SPOOFCHK", {"vf": vf, "spoofchk": spoof}),
                ("IFLA_VF_LINK_STATE", {"vf": vf, "link_state": state}),
                ("IFLA_VF_TRUST", {"vf": vf, "trust": trust}),
            ]
        }
        for vf, state, trust, spoof in vfs
    ]
    msg = ifinfmsg()
    msg["index"] = 7
    msg["attrs"] = [
        ("IFLA_IFNAME", "ens1f0"),
        ("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", info) for info in infos]}),
    ]
    msg.encode()
    return bytes(msg.data[16:])  # past the netlink header, as Netns hands replies to rtnl


def test_vf_state_from_pf_message() -> None:
    listed = rtnl.decode_vfs(_pf_message([(0, 0, 1, 1), (3, 1, 0, 1)]))
    assert listed == (
        rtnl.VfInfo(0, 0, trust=True, spoofchk=True),
        rtnl.VfInfo(3, 1, trust=False, spoofchk=True),
    )
    dev = SlaveDevice("net1", "0000:3b:02.3", "0000:3b:00.0", 3, "ens1f0")
    state = hostdev.vf_state(listed, dev)
    assert state == VfState("net1", "ens1f0", 3, "enable", trust=False, spoofchk=True)
    assert hachecks.problems(_opts(mode="balance-xor"), [state]) != []


def test_settings_a_driver_does_not_report_are_unknown() -> None:
    """The kernel sends -1 for a setting the driver leaves alone: not 'trust on'."""
    listed = rtnl.decode_vfs(_pf_message([(2, 2, 0xFFFFFFFF, 0xFFFFFFFF)]))
    assert listed == (rtnl.VfInfo(2, 2, trust=None, spoofchk=None),)
    state = hostdev.vf_state(listed, SlaveDevice("net2", "x", "y", 2, "ens1f1"))
    assert state == VfState("net2", "ens1f1", 2, "disable", trust=None, spoofchk=None)


def test_vf_missing_from_message_is_unknown() -> None:
    listed = rtnl.decode_vfs(_pf_message([(0, 0, 1, 1)]))
    assert hostdev.vf_state(listed, SlaveDevice("net1", "x", "y", 5, "ens1f0")) is None
    assert rtnl.decode_vfs(_pf_message([])) == ()


def test_the_kernel_answers_the_vf_question_for_any_link() -> None:
    """This host's kernel, through the plugin's own codec: no VFs on lo, no such link at all."""
    with Netns(None) as host:
        assert host.vfs("lo") == ()
        assert host.vfs("no-such-pf0") is None
