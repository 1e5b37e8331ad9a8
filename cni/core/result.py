"""CNI results for each spec version: the bond and its slaves, IPAM's addresses on the bond."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cni.core.errors import DECODE_FAILURE, CNIError
from cni.core.spec import at_least

# Route fields that only 1.1.0 defines; older results must not carry them.
_ROUTE_FIELDS_1_1 = ("mtu", "advmss", "priority", "table", "scope")


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    sandbox: str
    mtu: int | None = None


@dataclass(frozen=True)
class IPConfig:
    address: str  # CIDR, e.g. "192.0.2.10/24"
    gateway: str | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass(frozen=True)
class Result:
    """A version-neutral result; `render` writes it for one spec version."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Mapping[str, Any], ...] = ()
    dns: Mapping[str, Any] | None = None

    def render(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_render_interface(i, version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_render_ip(ip, version) for ip in self.ips]
        if self.routes:
            out["routes"] = [_render_route(r, version) for r in self.routes]
        out["dns"] = dict(self.dns or {})
        return out

    def addresses_of(self, name: str, sandbox: str) -> list[IPConfig]:
        """The IPs whose interface index points at `name` in `sandbox`."""
        wanted = {
            i
            for i, iface in enumerate(self.interfaces)
            if iface.name == name and iface.sandbox in ("", sandbox)
        }
        return [ip for ip in self.ips if ip.interface in wanted]


def _render_interface(iface: Interface, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if iface.mtu is not None and at_least(version, "1.1.0"):
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    return out


def _render_ip(ip: IPConfig, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not at_least(version, "1.0.0"):
        out["version"] = str(ip.family)
    out["address"] = ip.address
    if ip.gateway:
        out["gateway"] = ip.gateway
    if ip.interface is not None:
        out["interface"] = ip.interface
    return out


def _render_route(route: Mapping[str, Any], version: str) -> dict[str, Any]:
    if at_least(version, "1.1.0"):
        return dict(route)
    return {k: v for k, v in route.items() if k not in _ROUTE_FIELDS_1_1}


def _bad(what: str, detail: object) -> CNIError:
    return CNIError(DECODE_FAILURE, f"cannot decode {what}", repr(detail))


def parse(data: Mapping[str, Any] | None, what: str = "result") -> Result:
    """A Result from any supported version's JSON (prevResult, IPAM output)."""
    if not data:
        return Result()
    try:
        interfaces = tuple(
            Interface(
                str(i["name"]), str(i.get("mac", "")), str(i.get("sandbox", "")), i.get("mtu")
            )
            for i in data.get("interfaces") or ()
        )
        ips = []
        for ip in data.get("ips") or ():
            address = str(ipaddress.ip_interface(ip["address"]))
            index = ip.get("interface")
            if index is not None and not (isinstance(index, int) and 0 <= index < len(interfaces)):
                raise _bad(what, ip)
            ips.append(IPConfig(address, ip.get("gateway"), index))
        routes = tuple(dict(r) for r in data.get("routes") or () if "dst" in r)
        dns = data.get("dns")
        if dns is not None and not isinstance(dns, dict):
            raise _bad(what, dns)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(what, exc) from exc
    return Result(interfaces, tuple(ips), routes, dns)


def build(
    prev: Result,
    bond: Interface,
    slaves: Sequence[Interface],
    ipam: Result | None,
    config_dns: Mapping[str, Any] | None = None,
) -> Result:
    """prevResult extended by the bond, its slaves and IPAM's addresses (pointing at the bond)."""
    interfaces = list(prev.interfaces)
    bond_index = len(interfaces)
    interfaces.append(bond)
    known = {(i.name, i.sandbox) for i in interfaces}
    interfaces.extend(s for s in slaves if (s.name, s.sandbox) not in known)
    ips = list(prev.ips)
    routes = list(prev.routes)
    dns: dict[str, Any] = dict(prev.dns or {})
    if ipam is not None:
        ips.extend(IPConfig(ip.address, ip.gateway, bond_index) for ip in ipam.ips)
        routes.extend(ipam.routes)
        dns.update(ipam.dns or {})
    if not any(dns.values()) and config_dns:
        dns = dict(config_dns)  # IPAM said nothing: fall back to the config's own dns
    return Result(tuple(interfaces), tuple(ips), tuple(routes), dns)
