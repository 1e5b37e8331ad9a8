"""Config parsing: bond-cni's fields with their meaning, the extra options, error 7."""

from __future__ import annotations

from typing import Any

import pytest

from cni.core import config, options, spec
from cni.core.errors import DECODE_FAILURE, INVALID_CONFIG, CNIError
from tests.cni.conftest import ALL_VERSIONS, README_CONFIG, bond_config


def test_readme_config_parses_with_upstream_meaning() -> None:
    conf = config.parse(README_CONFIG, "bond0")
    assert conf.links == ("net1", "net2")
    assert conf.options.mode == "active-backup"
    assert conf.options.miimon == 100
    assert conf.options.fail_over_mac == "active"
    assert conf.mtu == 1500
    assert conf.ipam is not None and conf.ipam["type"] == "host-local"
    assert conf.options.kernel_values() == {"mode": 1, "miimon": 100, "fail_over_mac": 1}
    assert (conf.nic_diversity, conf.ha_checks, conf.links_in_container) == ("warn", "warn", True)


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize(("mode", "number"), list(options.MODES.items()))
def test_every_mode_by_name_and_number(version: str, mode: str, number: int) -> None:
    by_name = config.parse(bond_config(version, mode=mode))
    by_number = config.parse(bond_config(version, mode=number))
    assert by_name.options.mode == by_number.options.mode == mode
    assert by_name.options.kernel_values()["mode"] == number
    assert by_name.cni_version == version


ALL_OPTIONS_8023AD: dict[str, Any] = {
    "mode": "802.3ad",
    "miimon": 50,
    "xmitHashPolicy": "layer3+4",
    "lacpRate": "fast",
    "adSelect": "bandwidth",
    "updelay": 100,
    "downdelay": 150,
    "minLinks": 1,
    "allSlavesActive": 1,
    "failOverMac": "none",
    "mtu": 9000,
    "runtimeConfig": {"mac": "02:AA:BB:CC:DD:01"},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            ALL_OPTIONS_8023AD,
            {
                "mode": 4,
                "miimon": 50,
                "xmit_hash_policy": 1,
                "lacp_rate": 1,
                "ad_select": 1,
                "updelay": 100,
                "downdelay": 150,
                "min_links": 1,
                "all_slaves_active": 1,
                "fail_over_mac": 0,
            },
        ),
        (
            {
                "mode": "active-backup",
                "primary": "net2",
                "primaryReselect": "failure",
                "failOverMac": "follow",
            },
            {
                "mode": 1,
                "miimon": 100,
                "primary": "net2",
                "primary_reselect": 2,
                "fail_over_mac": 2,
            },
        ),
        (
            {
                "mode": "active-backup",
                "arpInterval": 200,
                "arpIpTargets": ["192.0.2.1", "192.0.2.9"],
                "arpValidate": "all",
                "arpAllTargets": "all",
            },
            {
                "mode": 1,
                "miimon": 0,
                "arp_interval": 200,
                "arp_ip_targets": ("192.0.2.1", "192.0.2.9"),
                "arp_validate": 3,
                "arp_all_targets": 1,
            },
        ),
        (
            {"mode": "balance-tlb", "tlbDynamicLb": 0},
            {"mode": 5, "miimon": 100, "tlb_dynamic_lb": 0},
        ),
        (
            {"mode": "balance-alb", "tlbDynamicLb": True},
            {"mode": 6, "miimon": 100, "tlb_dynamic_lb": 1},
        ),
        ({"miimon": "0", "xmitHashPolicy": 5}, {"mode": 0, "miimon": 0, "xmit_hash_policy": 5}),
        (
            {"failOverMac": 2, "mode": "active-backup"},
            {"mode": 1, "miimon": 100, "fail_over_mac": 2},
        ),
    ],
)
def test_options_map_to_kernel_values(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    conf = config.parse(bond_config(**fields))
    assert conf.options.kernel_values() == expected


def test_extra_fields() -> None:
    conf = config.parse(
        bond_config(
            **ALL_OPTIONS_8023AD,
            nicDiversity="enforce",
            haChecks="off",
            logFile="/var/log/bond-cni/bond.log",
            unknownField={"x": 1},
        )
    )
    assert conf.mac == "02:aa:bb:cc:dd:01"
    assert conf.mtu == 9000
    assert (conf.nic_diversity, conf.ha_checks, conf.log_file) == (
        "enforce",
        "off",
        "/var/log/bond-cni/bond.log",
    )


def test_mtu_zero_means_unset_as_upstream() -> None:
    assert config.parse(bond_config(mtu=0)).mtu is None


def test_host_links_need_explicit_opt_in() -> None:
    conf = config.parse(bond_config(linksInContainer=False, allowHostLinks=True))
    assert conf.links_in_container is False


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"mode": "round-robin"}, "'mode'", "active-backup"),
    ({"mode": 7}, "'mode'", "802.3ad"),
    ({"miimon": "fast"}, "'miimon'", "0.."),
    ({"miimon": -1}, "'miimon'", "0.."),
    ({"mtu": 40}, "'mtu'", "68..65535"),
    ({"failOverMac": 3}, "'failOverMac'", "none, active, follow"),
    ({"failOverMac": "always"}, "'failOverMac'", "none, active, follow"),
    ({"linksInContainer": "yes"}, "'linksInContainer'", "true, false"),
    ({"linksInContainer": False}, "'linksInContainer'", "allowHostLinks"),
    ({"links": [{"name": "net1"}]}, "'links'", "two or more"),
    ({"links": [{"name": "net1"}, {"name": "net1"}]}, "'links'", "unique"),
    ({"links": [{"name": "net1"}, {"ifname": "net2"}]}, "'links'", "interface name"),
    ({"links": [{"name": "net1"}, {"name": "a-very-long-name0"}]}, "'links'", "longer than 15"),
    ({"links": [{"name": "net1"}, {"name": "net:2"}]}, "'links'", "contains ':'"),
    ({"links": [{"name": "net1"}, {"name": "bond0"}]}, "'links'", "CNI_IFNAME"),
    ({"allSlavesActive": 2}, "'allSlavesActive'", "0, 1"),
    ({"tlbDynamicLb": 1}, "'tlbDynamicLb'", "balance-tlb, balance-alb"),
    ({"xmitHashPolicy": "layer5"}, "'xmitHashPolicy'", "layer3+4"),
    ({"lacpRate": "fast"}, "'lacpRate'", "802.3ad"),
    ({"mode": "802.3ad", "lacpRate": "medium"}, "'lacpRate'", "slow, fast"),
    ({"adSelect": "count"}, "'adSelect'", "802.3ad"),
    ({"mode": "802.3ad", "adSelect": "best"}, "'adSelect'", "stable, bandwidth, count"),
    ({"arpInterval": 100}, "'arpIpTargets'", "at least one target"),
    ({"arpIpTargets": ["192.0.2.1"]}, "'arpInterval'", "arpInterval > 0"),
    ({"arpInterval": 100, "arpIpTargets": ["2001:db8::1"]}, "'arpIpTargets'", "IPv4"),
    ({"arpInterval": 100, "arpIpTargets": ["0.0.0.0"]}, "'arpIpTargets'", "cannot be"),  # noqa: S104
    (
        {"arpInterval": 100, "arpIpTargets": [f"192.0.2.{i}" for i in range(1, 18)]},
        "'arpIpTargets'",
        "16",
    ),
    ({"arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "miimon": 100}, "'miimon'", "exclude"),
    (
        {"mode": "802.3ad", "arpInterval": 100, "arpIpTargets": ["192.0.2.1"]},
        "'arpInterval'",
        "balance-rr",
    ),
    ({"arpValidate": "sometimes"}, "'arpValidate'", "filter_active"),
    ({"arpAllTargets": "most"}, "'arpAllTargets'", "any, all"),
    ({"primary": "net1"}, "'primary'", "active-backup"),
    ({"mode": "active-backup", "primary": "net3"}, "'primary'", "net1, net2"),
    (
        {"mode": "active-backup", "primaryReselect": "never"},
        "'primaryReselect'",
        "always, better, failure",
    ),
    ({"updelay": 150}, "'updelay'", "multiple of miimon"),
    ({"miimon": 0, "downdelay": 100}, "'downdelay'", "miimon > 0"),
    ({"minLinks": "x"}, "'minLinks'", "0.."),
    ({"runtimeConfig": {"mac": "02:00:00:00:00"}}, "'runtimeConfig.mac'", "MAC like"),
    ({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}, "'runtimeConfig.mac'", "unicast"),
    ({"runtimeConfig": {"mac": "00:00:00:00:00:00"}}, "'runtimeConfig.mac'", "unicast"),
    (
        {"mode": 1, "failOverMac": 1, "runtimeConfig": {"mac": "02:00:00:00:00:01"}},
        "'runtimeConfig.mac'",
        "active slave's MAC",
    ),
    ({"nicDiversity": "strict"}, "'nicDiversity'", "enforce, warn, off"),
    ({"haChecks": True}, "'haChecks'", "enforce, warn, off"),
    ({"ipam": {"type": "bond"}}, "'ipam.type'", "IPAM plugin"),
    ({"ipam": {"type": "../host-local"}}, "'ipam.type'", "IPAM plugin"),
    ({"ipam": "host-local"}, "'ipam'", "JSON object"),
    ({"logFile": "bond.log"}, "'logFile'", "a file name in /var/log/bond-cni"),
    ({"logFile": "/etc/cron.d/x"}, "'logFile'", "a file name in /var/log/bond-cni"),
    ({"logFile": "/var/log/bond-cni/../x"}, "'logFile'", "a file name in /var/log/bond-cni"),
    ({"logFile": "/var/log/bond-cni/sub/x"}, "'logFile'", "a file name in /var/log/bond-cni"),
    ({"logFile": "/var/log/bond-cni/.."}, "'logFile'", "a file name in /var/log/bond-cni"),
]


@pytest.mark.parametrize(("fields", "field", "hint"), INVALID)
def test_invalid_field_is_error_7_naming_field_and_allowed(
    fields: dict[str, Any], field: str, hint: str
) -> None:
    with pytest.raises(CNIError) as caught:
        config.parse(bond_config(**fields), "bond0")
    assert caught.value.code == INVALID_CONFIG
    assert field in caught.value.msg
    assert hint in caught.value.msg


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff", b""])
def test_undecodable_stdin_is_error_6(raw: bytes) -> None:
    with pytest.raises(CNIError) as caught:
        spec.decode(raw)
    assert caught.value.code == DECODE_FAILURE
