"""The bond plugin against a real kernel: every mode and option, IPAM, failover, CHECK, DEL.

Runs inside the kernel VM (`pytest -m kernel`); the plugin is called in-process (see kernel.py)
because the point here is the logic, and Python imports cost seconds in the VM.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cni.core import result
from cni.core.errors import CNIError
from cni.core.policy import HOST_LINKS_ENV
from cni.core.spec import SUPPORTED_VERSIONS, at_least
from tests.cni.conftest import bond_config
from tests.cni.kernel import addresses, invoke, link_details, slaves_released
from tests.poll import poll
from tests.rigs.netns import PodNet, active_slave, bonding_status, ip, ping

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bonding")]

# Per mode: the config's options and what `ip -d link` (linkinfo.info_data) must then show.
MODES: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (
        {"mode": "balance-rr", "miimon": "100", "minLinks": 1, "allSlavesActive": 1},
        {"mode": "balance-rr", "miimon": 100, "min_links": 1, "all_slaves_active": 1},
        "load balancing (round-robin)",
    ),
    (
        {
            "mode": "active-backup",
            "failOverMac": 1,
            "primary": "net2",
            "primaryReselect": "failure",
            "miimon": 50,
            "updelay": 100,
            "downdelay": 150,
        },
        {
            "mode": "active-backup",
            "fail_over_mac": "active",
            "primary": "net2",
            "primary_reselect": "failure",
            "updelay": 100,
            "downdelay": 150,
        },
        "fault-tolerance (active-backup) (fail_over_mac active)",
    ),
    (
        {
            "mode": "balance-xor",
            "xmitHashPolicy": "layer3+4",
            "arpInterval": 200,
            "arpIpTargets": ["192.0.2.1", "192.0.2.9"],
            "arpValidate": "all",
            "arpAllTargets": "all",
        },
        {
            "mode": "balance-xor",
            "xmit_hash_policy": "layer3+4",
            "arp_interval": 200,
            "arp_ip_target": ["192.0.2.1", "192.0.2.9"],
            "arp_validate": "all",
            "arp_all_targets": "all",
            "miimon": 0,
        },
        "load balancing (xor)",
    ),
    ({"mode": "broadcast"}, {"mode": "broadcast", "miimon": 100}, "fault-tolerance (broadcast)"),
    (
        {"mode": "802.3ad", "lacpRate": "fast", "adSelect": "count", "xmitHashPolicy": "layer2+3"},
        {
            "mode": "802.3ad",
            "ad_lacp_rate": "fast",
            "ad_select": "count",
            "xmit_hash_policy": "layer2+3",
        },
        "IEEE 802.3ad Dynamic link aggregation",
    ),
    (
        {"mode": "balance-tlb", "tlbDynamicLb": 0, "xmitHashPolicy": "encap3+4"},
        {"mode": "balance-tlb", "tlb_dynamic_lb": 0, "xmit_hash_policy": "encap3+4"},
        "transmit load balancing",
    ),
    (
        {"mode": "balance-alb", "mtu": 9000, "runtimeConfig": {"mac": "02:11:22:33:44:55"}},
        {"mode": "balance-alb"},
        "adaptive load balancing",
    ),
]


ARP_MODES = {"balance-xor"}  # the one mode above on ARP monitoring: no carrier without an IP


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize(
    ("fields", "shown", "proc_mode"), [pytest.param(*m, id=m[0]["mode"]) for m in MODES]
)
def test_mode_options_visible_carrier_up_result_parses_and_del(
    pod_net: PodNet, fields: dict[str, Any], shown: dict[str, Any], proc_mode: str, version: str
) -> None:
    conf = bond_config(version, **fields, haChecks="off")
    out = invoke("ADD", pod_net, conf)
    assert out is not None
    assert out["cniVersion"] == version
    assert [i["name"] for i in out["interfaces"]] == ["bond0", "net1", "net2"]
    assert result.parse(out).render(version) == out  # parses back in its own version

    details = link_details(pod_net, "bond0")
    assert details is not None
    data = details["linkinfo"]["info_data"]
    for key, value in shown.items():
        assert data[key] == value, (key, data[key])
    assert "UP" in details["flags"]
    if fields["mode"] not in ARP_MODES:  # ADD returned with a bond that carries traffic
        assert "LOWER_UP" in details["flags"], details["flags"]
    if fields.get("failOverMac") != 1:  # with fail_over_mac active the MAC follows the active leg
        assert out["interfaces"][0]["mac"] == details["address"]
    if "mtu" in fields:
        assert details["mtu"] == fields["mtu"]
    if "runtimeConfig" in fields:
        assert details["address"] == fields["runtimeConfig"]["mac"]
    status = bonding_status(pod_net.pod_netns, "bond0")
    assert f"Bonding Mode: {proc_mode}" in status
    assert status.count("Slave Interface:") == 2
    for link in pod_net.links:
        slave = link_details(pod_net, link)
        assert slave is not None and slave.get("master") == "bond0" and "UP" in slave["flags"]

    assert invoke("DEL", pod_net, conf) is None
    assert slaves_released(pod_net)
    assert invoke("DEL", pod_net, conf) is None  # idempotent


def test_add_returns_with_a_bond_that_carries_traffic(pod_net: PodNet) -> None:
    """With updelay the link monitor uses a slave only half a second after it came up: ADD waits
    for that (bounded), so the pod's first packet goes out, no retry needed."""
    conf = bond_config(
        "1.1.0",
        mode="active-backup",
        failOverMac=1,
        miimon=100,
        updelay=500,
        ipam={"type": "static", "addresses": [{"address": "192.0.2.50/24"}]},
    )
    assert invoke("ADD", pod_net, conf) is not None
    details = link_details(pod_net, "bond0")
    assert details is not None and "LOWER_UP" in details["flags"], details
    assert ping(pod_net.pod_netns, pod_net.gateway, timeout_s=2)  # one try, right away
    assert invoke("DEL", pod_net, conf) is None


def _host_local(tmp: Path, version: str, **fields: Any) -> dict[str, Any]:
    ipam = {
        "type": "host-local",
        "ranges": [
            [{"subnet": "192.0.2.0/24", "rangeStart": "192.0.2.10", "gateway": "192.0.2.1"}],
            [{"subnet": "2001:db8::/64", "rangeStart": "2001:db8::10"}],
        ],
        "routes": [{"dst": "198.51.100.0/24"}, {"dst": "2001:db8:1::/64", "gw": "2001:db8::1"}],
        "dataDir": str(tmp),
    }
    return bond_config(version, ipam=ipam, **fields)


def _leases(tmp: Path) -> list[str]:
    return sorted(
        p.name for p in (tmp / "bondnet").glob("*") if p.name[0].isdigit() or ":" in p.name
    )


@pytest.mark.parametrize("version", ["0.3.1", "1.1.0"])
def test_failover_check_and_del(
    pod_net: PodNet, tmp_path: Path, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    conf = _host_local(
        tmp_path,
        version,
        mode="active-backup",
        failOverMac=1,
        miimon=50,
        nicDiversity="enforce",
        haChecks="enforce",
    )
    with caplog.at_level(logging.INFO, logger="cni"):
        out = invoke("ADD", pod_net, conf)
    # veth has no PCI parent: diversity is unknown, which enforce does not refuse.
    assert "diversity unknown" in caplog.text
    assert out is not None
    assert [ip["address"] for ip in out["ips"]] == ["192.0.2.10/24", "2001:db8::10/64"]
    assert all(ip["interface"] == 0 for ip in out["ips"])
    assert ("version" in out["ips"][0]) == (not at_least(version, "1.0.0"))
    assert addresses(pod_net, "bond0") == {"192.0.2.10/24", "2001:db8::10/64"}
    routes = ip("-j", "route", "show", "dev", "bond0", netns=pod_net.pod_netns)
    assert "198.51.100.0/24" in routes and '"gateway":"192.0.2.1"' in routes
    assert "2001:db8:1::/64" in ip("-6", "route", "show", "dev", "bond0", netns=pod_net.pod_netns)
    assert _leases(tmp_path) == ["192.0.2.10", "2001:db8::10"]

    # Traffic through the bond, then the active leg's switch port dies: ping goes on.
    poll(lambda: ping(pod_net.pod_netns, pod_net.gateway), timeout=30, what="first ping")
    active = active_slave(pod_net.pod_netns, "bond0")
    assert active in pod_net.links
    port = pod_net.switch_ports[pod_net.links.index(active)]
    ip("link", "set", port, "down", netns=pod_net.switch_netns)
    poll(
        lambda: active_slave(pod_net.pod_netns, "bond0") not in (active, None),
        timeout=30,
        what="failover to the other leg",
    )
    poll(lambda: ping(pod_net.pod_netns, pod_net.gateway), timeout=30, what="ping after failover")
    ip("link", "set", port, "up", netns=pod_net.switch_netns)

    prev = {**conf, "prevResult": out}
    if at_least(version, "0.4.0"):
        assert invoke("CHECK", pod_net, prev) is None
        ip("link", "set", "net2", "nomaster", netns=pod_net.pod_netns)
        with pytest.raises(CNIError, match="net2 is not a slave of bond0"):
            invoke("CHECK", pod_net, prev)
    else:
        with pytest.raises(CNIError, match="does not allow CHECK"):
            invoke("CHECK", pod_net, prev)

    assert invoke("DEL", pod_net, prev) is None
    assert slaves_released(pod_net)
    assert _leases(tmp_path) == []
    assert invoke("DEL", pod_net, prev) is None
    ip("netns", "delete", pod_net.pod_netns)
    assert invoke("DEL", pod_net, prev) is None  # the netns itself is gone


def test_static_ipam_and_prev_result(pod_net: PodNet) -> None:
    conf = bond_config(
        "1.0.0",
        mode="balance-xor",
        ipam={
            "type": "static",
            "addresses": [{"address": "192.0.2.77/24", "gateway": "192.0.2.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["192.0.2.53"]},
        },
        prevResult={
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": pod_net.pod_netns_path}],
            "ips": [{"address": "10.1.0.5/16", "interface": 0}],
        },
    )
    out = invoke("ADD", pod_net, conf)
    assert out is not None
    assert [i["name"] for i in out["interfaces"]] == ["eth0", "bond0", "net1", "net2"]
    assert out["ips"] == [
        {"address": "10.1.0.5/16", "interface": 0},
        {"address": "192.0.2.77/24", "gateway": "192.0.2.1", "interface": 1},
    ]
    assert out["dns"] == {"nameservers": ["192.0.2.53"]}
    assert "default via 192.0.2.1" in ip("route", "show", netns=pod_net.pod_netns)
    poll(lambda: ping(pod_net.pod_netns, pod_net.gateway), timeout=30, what="ping over xor")
    invoke("DEL", pod_net, conf)
    assert slaves_released(pod_net)


def _nothing_left(net: PodNet, tmp: Path | None = None, *, admin_down: bool = True) -> None:
    assert slaves_released(net)
    for link in net.links:  # released where they were: admin state and MTU as before
        details = link_details(net, link)
        assert details is not None and details["mtu"] == 1500
        assert ("UP" not in details["flags"]) == admin_down, link
    if tmp is not None:
        assert _leases(tmp) == []


def test_rollback_leaves_nothing_behind(pod_net: PodNet, tmp_path: Path) -> None:
    # A missing link: refused before any change.
    with pytest.raises(CNIError, match="'net3' from 'links' is not in the pod") as caught:
        invoke("ADD", pod_net, bond_config(links=[{"name": "net1"}, {"name": "net3"}]))
    assert caught.value.code == 7
    _nothing_left(pod_net)

    # The kernel refuses to enslave a loopback: the bond exists and net1 is enslaved by then.
    with pytest.raises(CNIError, match="netlink"):
        invoke("ADD", pod_net, bond_config(links=[{"name": "net1"}, {"name": "lo"}]))
    _nothing_left(pod_net)

    # IPAM fails (static refuses a bad address) after the bond is up with its slaves.
    with pytest.raises(CNIError, match="IPAM static ADD"):
        invoke(
            "ADD",
            pod_net,
            bond_config(ipam={"type": "static", "addresses": [{"address": "300.1.1.1/24"}]}),
        )
    _nothing_left(pod_net)

    # IPAM answers ADD with something that is not JSON (fault injection: a script of our own in
    # a CNI_PATH of its own) after the bond is up with its slaves: error 6, all undone.
    broken = tmp_path / "broken-ipam"
    broken.mkdir()
    (broken / "garbage").write_text("#!/bin/sh\ncat >/dev/null\necho 'this is not JSON'\n")
    (broken / "garbage").chmod(0o755)
    with pytest.raises(CNIError, match="IPAM garbage ADD printed no CNI result") as caught:
        invoke("ADD", pod_net, bond_config(ipam={"type": "garbage"}), cni_path=str(broken))
    assert caught.value.code == 6
    _nothing_left(pod_net)

    # The kernel refuses IPv6 on a bond whose MTU is below 1280: after IPAM leased both addresses.
    with pytest.raises(CNIError):
        invoke("ADD", pod_net, _host_local(tmp_path, "1.0.0", mtu=1200))
    _nothing_left(pod_net, tmp_path)

    # And the same pod then bonds fine.
    assert invoke("ADD", pod_net, _host_local(tmp_path, "1.0.0")) is not None
    with pytest.raises(CNIError, match="already exists"):
        invoke("ADD", pod_net, bond_config())
    invoke("DEL", pod_net, _host_local(tmp_path, "1.0.0"))
    _nothing_left(pod_net, tmp_path, admin_down=False)  # DEL leaves released slaves up


def test_host_links_move_in_and_back(pod_net: PodNet) -> None:
    # linksInContainer: false pulls links from the plugin's own netns where the node allows it
    # (here the runtime's BOND_CNI_ALLOW_HOST_LINKS); a netns stands in for the host, entered by
    # this very process (pushns) so the plugin runs in-process there.
    from pyroute2.netns import popns, pushns  # noqa: PLC0415 - only this test enters a netns

    host = pod_net.switch_netns
    ip("link", "add", "hl1", "type", "dummy", netns=host)
    ip("link", "add", "hl2", "type", "dummy", netns=host)
    conf = bond_config(
        links=[{"name": "hl1"}, {"name": "hl2"}], linksInContainer=False, allowHostLinks=True
    )
    allow = {HOST_LINKS_ENV: "true"}
    pushns(host)
    try:
        with pytest.raises(CNIError, match="'linksInContainer': false would move node links"):
            invoke("ADD", pod_net, conf)  # the NAD's allowHostLinks alone is not enough
        assert link_details(pod_net, "hl1") is None
        invoke("ADD", pod_net, conf, extra_env=allow)
        assert link_details(pod_net, "hl1") is not None
        assert link_details(pod_net, "bond0") is not None
        invoke("DEL", pod_net, conf, extra_env=allow)
    finally:
        popns()
    assert link_details(pod_net, "hl1") is None
    host_links = ip("link", "show", netns=host)
    assert "hl1" in host_links and "hl2" in host_links
