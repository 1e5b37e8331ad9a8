"""The netlink executor: every kernel change the plugin makes, through pyroute2, in one netns."""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cni.errors import PLUGIN_FAILURE, CNIError

IFF_UP = 0x1
_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
IFA_F_NODAD = 0x02
# pyroute2 keyword for each BondOptions field (IFLA_BOND_*).
_BOND_ATTR = {
    "mode": "mode",
    "miimon": "miimon",
    "fail_over_mac": "fail_over_mac",
    "all_slaves_active": "all_slaves_active",
    "tlb_dynamic_lb": "tlb_dynamic_lb",
    "xmit_hash_policy": "xmit_hash_policy",
    "lacp_rate": "ad_lacp_rate",
    "arp_interval": "arp_interval",
    "arp_ip_targets": "arp_ip_target",
    "arp_validate": "arp_validate",
    "arp_all_targets": "arp_all_targets",
    "primary": "primary",
    "primary_reselect": "primary_reselect",
    "updelay": "updelay",
    "downdelay": "downdelay",
    "min_links": "min_links",
    "ad_select": "ad_select",
}


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str
    mtu: int
    up: bool
    master: int | None
    kind: str | None
    bond: Mapping[str, Any]  # IFLA_BOND_* values by BondOptions field name, when kind == bond
    parent_bus: str | None
    parent_dev: str | None


def _failed(what: str, exc: Exception) -> CNIError:
    return CNIError(PLUGIN_FAILURE, f"netlink: {what} failed", str(exc))


def _nested(msg: Any, *path: str) -> Any:
    for name in path:
        if msg is None:
            return None
        msg = msg.get_attr(name)
    return msg


def _to_link(msg: Any) -> Link:
    data = _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_DATA")
    bond: dict[str, Any] = {}
    if data is not None:
        for field, attr in _BOND_ATTR.items():
            value = data.get_attr("IFLA_BOND_" + attr.upper())
            if value is not None:
                bond[field] = tuple(value) if isinstance(value, list) else value
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & IFF_UP),
        master=msg.get_attr("IFLA_MASTER") or None,
        kind=_nested(msg, "IFLA_LINKINFO", "IFLA_INFO_KIND"),
        bond=bond,
        parent_bus=msg.get_attr("IFLA_PARENT_DEV_BUS_NAME"),
        parent_dev=msg.get_attr("IFLA_PARENT_DEV_NAME"),
    )


class NetnsUnavailable(CNIError):
    """The network namespace cannot be opened: gone, or not a namespace (DEL tolerates this)."""


class Netns:
    """A netlink session in one network namespace (never created: flags=0)."""

    def __init__(self, path: str | None) -> None:
        from pyroute2.iproute.linux import IPRoute  # noqa: PLC0415 - kept off VERSION's path

        try:
            fileno = _netlink_socket_in(path) if path else None
            self._ipr = IPRoute(fileno=fileno) if fileno is not None else IPRoute()
        except OSError as exc:
            raise NetnsUnavailable(PLUGIN_FAILURE, f"cannot open netns {path}", str(exc)) from exc

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

        try:
            return (
                self._ipr.link(*args, **kwargs)
                if what == "link"
                else getattr(self._ipr, what)(*args, **kwargs)
            )
        except NetlinkError as exc:
            raise _failed(f"{what} {args[0]} {kwargs}", exc) from exc

    def link(self, name: str) -> Link | None:
        from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

        try:
            msgs = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _failed(f"get link {name}", exc) from exc
        return _to_link(msgs[0])

    def links(self) -> dict[str, Link]:
        """Every link in the netns by name: one dump instead of a get per link."""
        return {link.name: link for link in map(_to_link, self._call("link", "dump"))}

    def create_bond(
        self, name: str, values: Mapping[str, Any], mtu: int | None, mac: str | None
    ) -> int:
        attrs: dict[str, Any] = {}
        for field, value in values.items():
            if field == "primary":
                primary = self.link(str(value))
                attrs["bond_primary"] = primary.index if primary else 0
            else:
                attrs["bond_" + _BOND_ATTR[field]] = (
                    list(value) if isinstance(value, tuple) else value
                )
        if mtu:
            attrs["mtu"] = mtu
        if mac:
            attrs["address"] = mac
        self._call("link", "add", ifname=name, kind="bond", **attrs)
        created = self.link(name)
        if created is None:
            raise CNIError(PLUGIN_FAILURE, f"bond {name} vanished right after creation")
        return created.index

    def delete(self, index: int) -> None:
        self._call("link", "del", index=index)

    def set_state(self, index: int, up: bool) -> None:
        self._call("link", "set", index=index, state="up" if up else "down")

    def set_master(self, index: int, master: int) -> None:
        self._call("link", "set", index=index, master=master)

    def enslave(self, index: int, master: int) -> None:
        """Down and into the bond in one message: the kernel applies the flags before the master
        (a slave must be down to be enslaved), and the bond brings its new slave up itself."""
        self._call("link", "set", index=index, master=master, state="down")

    def set_mtu(self, index: int, mtu: int) -> None:
        self._call("link", "set", index=index, mtu=mtu)

    def move(self, index: int, netns_fd: int) -> None:
        self._call("link", "set", index=index, net_ns_fd=netns_fd)

    def add_address(self, index: int, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
        self._call(
            "addr",
            "add",
            index=index,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            **extra,
        )

    def addresses(self, index: int) -> set[str]:
        found = set()
        for msg in self._call("addr", "dump", index=index):
            found.add(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        return {str(ipaddress.ip_interface(a)) for a in found}

    def add_route(self, index: int, route: Mapping[str, Any], gateway: str | None) -> None:
        dst = ipaddress.ip_network(route["dst"], strict=False)
        attrs: dict[str, Any] = {"dst": str(dst), "oif": index}
        if gateway:
            attrs["gateway"] = gateway
        for key, attr in (("priority", "priority"), ("table", "table"), ("mtu", "mtu")):
            if route.get(key):
                attrs[attr] = route[key]
        if "scope" in route:
            attrs["scope"] = route["scope"]
        self._call("route", "add", **attrs)


def _netlink_socket_in(path: str) -> int:
    """A NETLINK_ROUTE socket created inside the netns at `path`; returns its fd.

    Instead of IPRoute(netns=path, flags=0), which forks a helper child per socket: this thread
    enters the netns, makes the socket and comes back. Never creates a namespace (O_RDONLY open).
    """
    import ctypes  # noqa: PLC0415
    import socket  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:  # stuck in the pod's netns: must not go on
                os.abort()
        return sock.detach()
    finally:
        os.close(home)
        os.close(target)


def lean_import() -> None:
    """Skip pyroute2/__init__, which imports every pyroute2 API (NDB, conntrack, IPDB...).

    For the plugin process only (cni.main.main): ~90 ms of a ~300 ms start-up. The package's
    submodules load as usual from the same path; a process that also wants `from pyroute2 import
    X` (a test run, another tool) must not call this.
    """
    import importlib.util  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import types  # noqa: PLC0415

    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("pyroute2")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package


def own_netns_fd() -> int:
    """An fd of the namespace this process runs in (the host's), to move links back into."""
    return os.open("/proc/self/ns/net", os.O_RDONLY)
