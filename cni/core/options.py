"""The bonding driver's options: their names, the kernel's values, and one bond's settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Kernel values of the enumerated bonding options (include/uapi/linux/if_bonding.h).
MODES = {
    "balance-rr": 0,
    "active-backup": 1,
    "balance-xor": 2,
    "broadcast": 3,
    "802.3ad": 4,
    "balance-tlb": 5,
    "balance-alb": 6,
}
FAIL_OVER_MAC = {"none": 0, "active": 1, "follow": 2}
XMIT_HASH_POLICY = {
    "layer2": 0,
    "layer3+4": 1,
    "layer2+3": 2,
    "encap2+3": 3,
    "encap3+4": 4,
    "vlan+srcmac": 5,
}
LACP_RATE = {"slow": 0, "fast": 1}
ARP_VALIDATE = {
    "none": 0,
    "active": 1,
    "backup": 2,
    "all": 3,
    "filter": 4,
    "filter_active": 5,
    "filter_backup": 6,
}
ARP_ALL_TARGETS = {"any": 0, "all": 1}
PRIMARY_RESELECT = {"always": 0, "better": 1, "failure": 2}
AD_SELECT = {"stable": 0, "bandwidth": 1, "count": 2}
POLICIES = ("enforce", "warn", "off")


@dataclass(frozen=True)
class BondOptions:
    """Bonding driver options; None means 'leave the kernel default'."""

    mode: str = "balance-rr"
    miimon: int = 100
    fail_over_mac: str | None = None
    all_slaves_active: int | None = None
    tlb_dynamic_lb: int | None = None
    xmit_hash_policy: str | None = None
    lacp_rate: str | None = None
    arp_interval: int | None = None
    arp_ip_targets: tuple[str, ...] = ()
    arp_validate: str | None = None
    arp_all_targets: str | None = None
    primary: str | None = None
    primary_reselect: str | None = None
    updelay: int | None = None
    downdelay: int | None = None
    min_links: int | None = None
    ad_select: str | None = None

    def kernel_values(self) -> dict[str, int | str | tuple[str, ...]]:
        """The options as the kernel's IFLA_BOND_* values (primary stays a link name)."""
        tables: dict[str, Mapping[str, int]] = {
            "mode": MODES,
            "fail_over_mac": FAIL_OVER_MAC,
            "xmit_hash_policy": XMIT_HASH_POLICY,
            "lacp_rate": LACP_RATE,
            "arp_validate": ARP_VALIDATE,
            "arp_all_targets": ARP_ALL_TARGETS,
            "primary_reselect": PRIMARY_RESELECT,
            "ad_select": AD_SELECT,
        }
        values: dict[str, int | str | tuple[str, ...]] = {}
        for name, value in vars(self).items():
            if value is None or value == ():
                continue
            values[name] = tables[name][value] if name in tables else value
        return values
