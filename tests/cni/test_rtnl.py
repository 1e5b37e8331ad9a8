"""cni.kernel.rtnl's messages, checked against an independent codec: pyroute2's message classes.

What the kernel does with them is the kernel tier's business (every option read back with
`ip -d link`); here, that each request says what it means and each reply is read right.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from cni.kernel import rtnl

# BondOptions field -> pyroute2's IFLA_BOND_* name, and a value for each.
PYROUTE2_NAME = {
    "lacp_rate": "IFLA_BOND_AD_LACP_RATE",
    "arp_ip_targets": "IFLA_BOND_ARP_IP_TARGET",
}
VALUES: dict[str, Any] = {
    "mode": 4,
    "miimon": 100,
    "updelay": 200,
    "downdelay": 300,
    "arp_interval": 250,
    "arp_ip_targets": ("192.0.2.1", "198.51.100.7"),
    "arp_validate": 3,
    "arp_all_targets": 1,
    "primary": 5,
    "primary_reselect": 2,
    "fail_over_mac": 1,
    "xmit_hash_policy": 2,
    "all_slaves_active": 1,
    "min_links": 2,
    "lacp_rate": 1,
    "ad_select": 2,
    "tlb_dynamic_lb": 0,
}


def _parsed(request: tuple[int, int, bytes], cls: Any) -> Any:
    kind, flags, body = request
    msg = cls(rtnl.message(kind, flags, 7, body))
    msg.decode()
    assert msg["header"]["type"] == kind and msg["header"]["sequence_number"] == 7
    assert msg["header"]["flags"] == flags | rtnl.NLM_F_REQUEST
    return msg


def test_new_bond_carries_every_option() -> None:
    msg = _parsed(rtnl.new_bond("bond0", VALUES, 9000, "02:00:5E:10:00:01"), ifinfmsg)
    assert msg["header"]["flags"] & rtnl.NLM_F_CREATE and msg["header"]["flags"] & rtnl.NLM_F_EXCL
    assert msg.get_attr("IFLA_IFNAME") == "bond0"
    assert msg.get_attr("IFLA_MTU") == 9000
    assert msg.get_attr("IFLA_ADDRESS") == "02:00:5e:10:00:01"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "bond"
    data = info.get_attr("IFLA_INFO_DATA")
    for field, value in VALUES.items():
        name = PYROUTE2_NAME.get(field, "IFLA_BOND_" + field.upper())
        got = data.get_attr(name)
        assert (tuple(got) if isinstance(got, list) else got) == value, field


def test_set_link_flags_master_mtu_netns() -> None:
    msg = _parsed(rtnl.set_link(4, up=False, master=9), ifinfmsg)
    assert (msg["index"], msg["flags"], msg["change"]) == (4, 0, rtnl.IFF_UP)
    assert msg.get_attr("IFLA_MASTER") == 9
    msg = _parsed(rtnl.set_link(4, up=True), ifinfmsg)
    assert (msg["flags"], msg["change"], msg.get_attr("IFLA_MASTER")) == (1, 1, None)
    msg = _parsed(rtnl.set_link(4, mtu=1400, netns_fd=12), ifinfmsg)
    assert msg["change"] == 0 and msg.get_attr("IFLA_MTU") == 1400
    assert msg.get_attr("IFLA_NET_NS_FD") == 12
    assert _parsed(rtnl.delete_link(4), ifinfmsg)["index"] == 4


@pytest.mark.parametrize(
    ("cidr", "family", "broadcast", "flags"),
    [
        ("192.0.2.10/24", 2, "192.0.2.255", 0),
        ("192.0.2.10/31", 2, None, 0),
        ("2001:db8::10/64", 10, None, rtnl.IFA_F_NODAD),
    ],
)
def test_new_address(cidr: str, family: int, broadcast: str | None, flags: int) -> None:
    msg = _parsed(rtnl.new_address(3, cidr), ifaddrmsg)
    address, prefix = cidr.split("/")
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (family, int(prefix), 3)
    assert msg["flags"] == flags
    assert msg.get_attr("IFA_LOCAL") == address and msg.get_attr("IFA_ADDRESS") == address
    assert msg.get_attr("IFA_BROADCAST") == broadcast


def test_new_route() -> None:
    route = {"dst": "198.51.100.0/24", "priority": 50, "table": 100, "mtu": 1400, "scope": 0}
    msg = _parsed(rtnl.new_route(3, route, "192.0.2.1"), rtmsg)
    assert (msg["family"], msg["dst_len"], msg["table"], msg["type"]) == (2, 24, 100, 1)
    assert msg.get_attr("RTA_DST") == "198.51.100.0"
    assert msg.get_attr("RTA_GATEWAY") == "192.0.2.1"
    assert (msg.get_attr("RTA_OIF"), msg.get_attr("RTA_PRIORITY")) == (3, 50)
    assert msg.get_attr("RTA_TABLE") == 100
    assert msg.get_attr("RTA_METRICS").get_attr("RTAX_MTU") == 1400
    default = _parsed(rtnl.new_route(3, {"dst": "::/0"}, None), rtmsg)
    assert (default["family"], default["dst_len"], default["table"]) == (10, 0, 254)
    assert default.get_attr("RTA_DST") is None and default.get_attr("RTA_GATEWAY") is None
    big = _parsed(rtnl.new_route(3, {"dst": "10.0.0.0/8", "table": 1000}, None), rtmsg)
    assert (big["table"], big.get_attr("RTA_TABLE")) == (0, 1000)


def test_decode_link_reads_what_pyroute2_wrote() -> None:
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["change"] = 8, rtnl.IFF_UP | rtnl.IFF_LOWER_UP, 0
    data = [
        ("IFLA_BOND_" + f.upper() if f not in PYROUTE2_NAME else PYROUTE2_NAME[f], v)
        for f, v in VALUES.items()
    ]
    msg["attrs"] = [
        ("IFLA_IFNAME", "bond0"),
        ("IFLA_ADDRESS", "02:00:5e:10:00:01"),
        ("IFLA_MTU", 9000),
        ("IFLA_MASTER", 0),
        (
            "IFLA_LINKINFO",
            {"attrs": [("IFLA_INFO_KIND", "bond"), ("IFLA_INFO_DATA", {"attrs": data})]},
        ),
        ("IFLA_PARENT_DEV_NAME", "0000:3b:02.1"),
        ("IFLA_PARENT_DEV_BUS_NAME", "pci"),
    ]
    msg.encode()
    link = rtnl.decode_link(bytes(msg.data[16:]))
    assert link == rtnl.Link(
        index=8,
        name="bond0",
        mac="02:00:5e:10:00:01",
        mtu=9000,
        up=True,
        carrier=True,
        master=None,
        kind="bond",
        bond=VALUES,
        parent_bus="pci",
        parent_dev="0000:3b:02.1",
    )


def test_decode_link_reads_a_bond_slaves_state_and_the_active_slave() -> None:
    slave = ifinfmsg()
    slave["index"], slave["flags"], slave["change"] = 5, rtnl.IFF_UP, 0
    slave_data = [
        ("IFLA_BOND_SLAVE_STATE", 1),
        ("IFLA_BOND_SLAVE_MII_STATUS", 2),
        ("IFLA_BOND_SLAVE_LINK_FAILURE_COUNT", 3),
    ]
    info = [("IFLA_INFO_SLAVE_KIND", "bond"), ("IFLA_INFO_SLAVE_DATA", {"attrs": slave_data})]
    slave["attrs"] = [
        ("IFLA_IFNAME", "net1"),
        ("IFLA_MASTER", 7),
        ("IFLA_LINKINFO", {"attrs": info}),
    ]
    slave.encode()
    link = rtnl.decode_link(bytes(slave.data[16:]))
    assert (link.master, link.carrier) == (7, False)
    assert link.slave == {"state": 1, "mii_status": 2, "link_failure_count": 3}
    bond = ifinfmsg()
    bond["index"], bond["flags"], bond["change"] = 7, rtnl.IFF_UP, 0
    data = [("IFLA_BOND_MODE", 1), ("IFLA_BOND_ACTIVE_SLAVE", 6)]
    bond_info = [("IFLA_INFO_KIND", "bond"), ("IFLA_INFO_DATA", {"attrs": data})]
    bond["attrs"] = [("IFLA_IFNAME", "bond0"), ("IFLA_LINKINFO", {"attrs": bond_info})]
    bond.encode()
    assert rtnl.decode_link(bytes(bond.data[16:])).bond == {"mode": 1, "active_slave": 6}


def test_split_and_errors() -> None:
    ack = rtnl.message(rtnl.NLMSG_ERROR, 0, 5, struct.pack("=i", 0) + b"\0" * 16)
    done = rtnl.message(rtnl.NLMSG_DONE, 0, 5, b"\0\0\0\0")
    odd = rtnl.message(99, 0, 5, b"abcde")  # 21 bytes: padded to 24 before the next
    found = list(rtnl.split(odd + b"\0\0\0" + ack + done))
    assert [(k, s) for k, _f, s, _p in found] == [
        (99, 5),
        (rtnl.NLMSG_ERROR, 5),
        (rtnl.NLMSG_DONE, 5),
    ]
    assert found[0][3] == b"abcde"
    assert rtnl.error(0, found[1][3]) is None
    with pytest.raises(ValueError, match="netlink message of 99 bytes"):
        list(rtnl.split(struct.pack("=IHHII", 99, 1, 0, 0, 0)))

    # -EPERM with the kernel's extack text after a capped copy of the request's header.
    text = b"Device can not be enslaved while up\0"
    payload = struct.pack("=i", -1) + struct.pack("=IHHII", 40, 16, 5, 5, 0) + rtnl.nla(1, text)
    refused = rtnl.error(rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, payload)
    assert refused is not None and refused.errno == 1
    assert refused.kernel_message == "Device can not be enslaved while up"
    assert str(refused) == "[Errno 1] Operation not permitted: Device can not be enslaved while up"
    # Uncapped: the whole request (of an odd length, then padding) precedes the TLVs.
    kind, flags, body = rtnl.new_bond("b", {}, None, None)
    request = rtnl.message(kind, flags, 5, body + b"x")
    payload = struct.pack("=i", -17) + request + b"\0" * 3 + rtnl.nla(1, b"exists\0")
    refused = rtnl.error(rtnl.NLM_F_ACK_TLVS, payload)
    assert refused is not None and (refused.errno, refused.kernel_message) == (17, "exists")
    plain = rtnl.error(0, struct.pack("=i", -19) + request)  # no extack: errno alone
    assert plain is not None and (plain.errno, plain.kernel_message) == (19, "")


def test_get_link_with_vfs_asks_for_the_vf_list() -> None:
    msg = _parsed(rtnl.get_link("ens1f0", vfs=True), ifinfmsg)
    assert msg.get_attr("IFLA_IFNAME") == "ens1f0"
    assert msg.get_attr("IFLA_EXT_MASK") == rtnl.RTEXT_FILTER_VF
    assert _parsed(rtnl.get_link("ens1f0"), ifinfmsg).get_attr("IFLA_EXT_MASK") is None
