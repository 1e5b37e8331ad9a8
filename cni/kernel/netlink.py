"""The netlink executor: every kernel change the plugin makes, in one netns, over rtnetlink.

Requests are built by cni.kernel.rtnl and sent on a plain NETLINK_ROUTE socket (one round trip
each).
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Mapping
from typing import Any

from cni.core.errors import PLUGIN_FAILURE, CNIError
from cni.core.policy import own_netns_error
from cni.kernel import rtnl
from cni.kernel.rtnl import Link, NetlinkError, VfInfo

__all__ = [
    "Link",
    "Netns",
    "NetnsUnavailable",
    "OwnNetns",
    "VfInfo",
    "link_events",
    "open_netns",
    "own_netns_fd",
]

_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP, _NETLINK_DROP_MEMBERSHIP, _NETLINK_EXT_ACK = 1, 2, 11
_ENODEV = 19


def _failed(what: str, exc: Exception) -> CNIError:
    return CNIError(PLUGIN_FAILURE, f"netlink: {what} failed", str(exc))


class NetnsUnavailable(CNIError):
    """The network namespace cannot be opened: gone, or not a namespace (DEL tolerates this)."""


class OwnNetns(CNIError):
    """CNI_NETNS names the namespace this process runs in (the node's): never a pod's."""


class Netns:
    """A netlink session in one network namespace (never created: the netns is opened O_RDONLY)."""

    def __init__(self, path: str | None) -> None:
        try:
            fileno = _netlink_socket_in(path) if path else None
        except OSError as exc:
            raise NetnsUnavailable(PLUGIN_FAILURE, f"cannot open netns {path}", str(exc)) from exc
        if fileno is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        else:
            self._sock = socket.socket(fileno=fileno)
        self._sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)  # the kernel's own reason
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, request: tuple[int, int, bytes]) -> list[tuple[int, bytes]]:
        """Send one request; its replies as (type, payload), or NetlinkError."""
        kind, flags, body = request
        self._seq += 1
        self._sock.send(rtnl.message(kind, flags, self._seq, body))
        replies: list[tuple[int, bytes]] = []
        while True:
            for reply, reply_flags, seq, payload in rtnl.split(self._sock.recv(1 << 18)):
                if seq != self._seq:
                    continue  # a late answer to an earlier request
                if reply == rtnl.NLMSG_ERROR:
                    if (refused := rtnl.error(reply_flags, payload)) is not None:
                        raise refused
                    return replies
                if reply == rtnl.NLMSG_DONE:
                    return replies
                replies.append((reply, payload))
                if not reply_flags & rtnl.NLM_F_MULTI and not flags & rtnl.NLM_F_ACK:
                    return replies

    def _do(self, what: str, request: tuple[int, int, bytes]) -> list[tuple[int, bytes]]:
        try:
            return self._request(request)
        except NetlinkError as exc:
            raise _failed(what, exc) from exc

    def link(self, name: str) -> Link | None:
        try:
            replies = self._request(rtnl.get_link(name))
        except NetlinkError as exc:
            if exc.errno == _ENODEV:
                return None
            raise _failed(f"get link {name}", exc) from exc
        return rtnl.decode_link(replies[0][1])

    def vfs(self, pf: str) -> tuple[VfInfo, ...] | None:
        """What PF `pf` says about its VFs; None when there is no such link here."""
        try:
            replies = self._request(rtnl.get_link(pf, vfs=True))
        except NetlinkError as exc:
            if exc.errno == _ENODEV:
                return None
            raise _failed(f"get VFs of {pf}", exc) from exc
        return rtnl.decode_vfs(replies[0][1])

    def links(self) -> dict[str, Link]:
        """Every link in the netns by name: one dump instead of a get per link."""
        replies = self._do("dump links", rtnl.dump_links())
        found = (rtnl.decode_link(p) for kind, p in replies if kind == rtnl.RTM_NEWLINK)
        return {link.name: link for link in found}

    def wait_for_carrier(self, index: int, timeout: float) -> Link | None:
        """Link `index` once it has carrier, or as it is when `timeout` (seconds) runs out; None
        if it is gone. Woken by the kernel's link notifications (RTNLGRP_LINK), not by polling."""
        self._sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, rtnl.RTNLGRP_LINK)
        deadline = time.monotonic() + timeout
        try:
            while True:
                # Read the state after subscribing, so no change between the two goes unseen.
                link = next((x for x in self.links().values() if x.index == index), None)
                left = deadline - time.monotonic()
                if link is None or link.carrier or left <= 0:
                    return link
                readable, _, _ = select.select([self._sock], [], [], left)
                while readable:  # drop the notifications: the next dump says it all
                    self._sock.recv(1 << 18)
                    readable, _, _ = select.select([self._sock], [], [], 0)
        finally:
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_DROP_MEMBERSHIP, rtnl.RTNLGRP_LINK)

    def create_bond(
        self, name: str, values: Mapping[str, Any], mtu: int | None, mac: str | None
    ) -> int:
        kernel = dict(values)
        if "primary" in kernel:
            primary = self.link(str(kernel["primary"]))
            kernel["primary"] = primary.index if primary else 0
        self._do(f"create bond {name}", rtnl.new_bond(name, kernel, mtu, mac))
        created = self.link(name)
        if created is None:
            raise CNIError(PLUGIN_FAILURE, f"bond {name} vanished right after creation")
        return created.index

    def delete(self, index: int) -> None:
        self._do(f"delete link {index}", rtnl.delete_link(index))

    def set_state(self, index: int, up: bool) -> None:
        self._do(f"set link {index} {'up' if up else 'down'}", rtnl.set_link(index, up=up))

    def set_master(self, index: int, master: int) -> None:
        self._do(f"set link {index} master {master}", rtnl.set_link(index, master=master))

    def enslave(self, index: int, master: int) -> None:
        """Down and into the bond in one message: the kernel applies the flags before the master
        (a slave must be down to be enslaved), and the bond brings its new slave up itself."""
        self._do(f"enslave link {index} to {master}", rtnl.set_link(index, up=False, master=master))

    def set_mtu(self, index: int, mtu: int) -> None:
        self._do(f"set link {index} mtu {mtu}", rtnl.set_link(index, mtu=mtu))

    def move(self, index: int, netns_fd: int) -> None:
        self._do(f"move link {index} to another netns", rtnl.set_link(index, netns_fd=netns_fd))

    def add_address(self, index: int, cidr: str) -> None:
        self._do(f"add address {cidr} to link {index}", rtnl.new_address(index, cidr))

    def default_route_links(self) -> set[int]:
        """Indexes of the links any default route (IPv4 or IPv6, any table) goes out of."""
        found: set[int] = set()
        for kind, payload in self._do("dump routes", rtnl.dump_routes()):
            if kind == rtnl.RTM_NEWROUTE:
                found |= rtnl.default_route_links(payload)
        return found

    def addresses(self, index: int) -> set[str]:
        found = set()
        for kind, payload in self._do("dump addresses", rtnl.dump_addresses()):
            address = rtnl.decode_address(payload) if kind == rtnl.RTM_NEWADDR else None
            if address is not None and address[0] == index:
                found.add(address[1])
        return found

    def add_route(self, index: int, route: Mapping[str, Any], gateway: str | None) -> None:
        what = f"add route {route.get('dst')} via {gateway or 'link'} on link {index}"
        self._do(what, rtnl.new_route(index, route, gateway))


def _netlink_socket_in(path: str) -> int:
    """A NETLINK_ROUTE socket created inside the netns at `path`; returns its fd.

    This thread enters the netns, makes the socket and comes back (a netlink socket stays in the
    netns it was made in). Never creates a namespace (O_RDONLY open).
    """
    import ctypes  # noqa: PLC0415

    libc = ctypes.CDLL(None, use_errno=True)
    target = open_netns(path)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(target)
        raise
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:  # stuck in the pod's netns: must not go on
                os.abort()
        return sock.detach()
    finally:
        os.close(home)
        os.close(target)


def open_netns(path: str) -> int:
    """An fd of the netns at `path`; OwnNetns when that is this thread's own (the node's, for the
    plugin and the hostNetwork helper): compared by inode, whatever the path's spelling."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        opened, own = os.fstat(fd), os.stat("/proc/thread-self/ns/net")
    except OSError:
        os.close(fd)
        raise
    if (opened.st_dev, opened.st_ino) == (own.st_dev, own.st_ino):
        os.close(fd)
        error = own_netns_error(path)
        raise OwnNetns(error.code, error.msg, error.details)
    return fd


def link_events(path: str) -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket in the netns at `path` that receives that netns' link
    notifications (RTNLGRP_LINK); NetnsUnavailable if the netns cannot be opened. The socket
    keeps the netns alive: close it when the netns' path goes away."""
    try:
        fileno = _netlink_socket_in(path)
    except OSError as exc:
        raise NetnsUnavailable(PLUGIN_FAILURE, f"cannot open netns {path}", str(exc)) from exc
    except OwnNetns as exc:  # a record naming the node's netns: never a pod's bond to watch
        raise NetnsUnavailable(exc.code, exc.msg, exc.details) from exc
    sock = socket.socket(fileno=fileno)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, rtnl.RTNLGRP_LINK)
    sock.setblocking(False)
    return sock


def own_netns_fd() -> int:
    """An fd of the namespace this process runs in (the host's), to move links back into."""
    return os.open("/proc/self/ns/net", os.O_RDONLY)
