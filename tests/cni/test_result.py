"""Results for every spec version: bond and slaves listed, IPs on the bond, prevResult kept."""

from __future__ import annotations

from typing import Any

import pytest

from cni.core import result
from cni.core.errors import DECODE_FAILURE, CNIError
from cni.core.spec import at_least
from tests.cni.conftest import ALL_VERSIONS

NS = "/run/netns/pod"
BOND = result.Interface("bond0", "02:00:00:00:00:01", NS, 1500)
SLAVES = [
    result.Interface("net1", "02:00:00:00:00:01", NS),
    result.Interface("net2", "02:00:00:00:00:02", NS),
]
IPAM_1_0: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1"}, {"address": "2001:db8::10/64"}],
    "routes": [
        {"dst": "0.0.0.0/0"},
        {"dst": "198.51.100.0/24", "gw": "192.0.2.254", "priority": 10},
    ],
    "dns": {"nameservers": ["192.0.2.53"], "search": ["pod.example"]},
}
IPAM_0_3: dict[str, Any] = {
    "cniVersion": "0.3.1",
    "ips": [{"version": "4", "address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_result_shape(version: str) -> None:
    out = result.build(result.Result(), BOND, SLAVES, result.parse(IPAM_1_0)).render(version)
    assert out["cniVersion"] == version
    assert [i["name"] for i in out["interfaces"]] == ["bond0", "net1", "net2"]
    assert all(i["sandbox"] == NS for i in out["interfaces"])
    assert out["interfaces"][0]["mac"] == "02:00:00:00:00:01"
    assert ("mtu" in out["interfaces"][0]) == at_least(version, "1.1.0")
    assert [ip["interface"] for ip in out["ips"]] == [0, 0]
    assert [ip.get("version") for ip in out["ips"]] == (
        [None, None] if at_least(version, "1.0.0") else ["4", "6"]
    )
    assert ("priority" in out["routes"][1]) == at_least(version, "1.1.0")
    assert out["dns"] == IPAM_1_0["dns"]
    # What we print must parse back to the same thing (a runtime reads it as prevResult).
    assert result.parse(out).render(version) == out


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_older_ipam_result_converts(version: str) -> None:
    out = result.build(result.Result(), BOND, SLAVES, result.parse(IPAM_0_3)).render(version)
    assert out["ips"][0]["address"] == "192.0.2.10/24"
    assert out["ips"][0]["gateway"] == "192.0.2.1"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_prev_result_is_extended_not_replaced(version: str) -> None:
    prev = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:aa", "sandbox": NS}, SLAVES_JSON[0]],
        "ips": [
            {
                "address": "10.0.0.5/24",
                "interface": 0,
                **({} if at_least(version, "1.0.0") else {"version": "4"}),
            }
        ],
        "routes": [{"dst": "10.0.0.0/8"}],
        "dns": {"nameservers": ["10.0.0.53"]},
    }
    out = result.build(result.parse(prev), BOND, SLAVES, result.parse(IPAM_0_3)).render(version)
    names = [i["name"] for i in out["interfaces"]]
    assert names == ["eth0", "net1", "bond0", "net2"]  # net1 was already there: not listed twice
    assert out["ips"][0]["address"] == "10.0.0.5/24" and out["ips"][0]["interface"] == 0
    assert out["ips"][1]["interface"] == names.index("bond0")
    assert {"dst": "10.0.0.0/8"} in out["routes"] and {"dst": "0.0.0.0/0"} in out["routes"]
    assert out["dns"] == {"nameservers": ["10.0.0.53"]}


SLAVES_JSON = [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": NS}]


def test_config_dns_only_when_ipam_has_none() -> None:
    conf_dns = {"nameservers": ["203.0.113.53"]}
    from_ipam = result.build(result.Result(), BOND, SLAVES, result.parse(IPAM_1_0), conf_dns)
    assert from_ipam.dns == IPAM_1_0["dns"]
    fallback = result.build(result.Result(), BOND, SLAVES, result.parse(IPAM_0_3), conf_dns)
    assert fallback.dns == conf_dns


def test_no_ipam_gives_l2_result() -> None:
    out = result.build(result.Result(), BOND, SLAVES, None).render("1.0.0")
    assert "ips" not in out and len(out["interfaces"]) == 3


def test_addresses_of_bond_for_check() -> None:
    built = result.build(result.Result(), BOND, SLAVES, result.parse(IPAM_1_0))
    assert [ip.address for ip in built.addresses_of("bond0", NS)] == [
        "192.0.2.10/24",
        "2001:db8::10/64",
    ]
    assert built.addresses_of("bond0", "/run/netns/other") == []


@pytest.mark.parametrize(
    "bad",
    [
        {"ips": [{"address": "not-an-ip"}]},
        {"ips": [{"gateway": "192.0.2.1"}]},
        {"interfaces": [{"mac": "x"}]},
        {"ips": [{"address": "192.0.2.1/24", "interface": 3}]},
        {"dns": ["x"]},
    ],
)
def test_bad_results_are_error_6(bad: dict[str, Any]) -> None:
    with pytest.raises(CNIError) as caught:
        result.parse(bad)
    assert caught.value.code == DECODE_FAILURE
