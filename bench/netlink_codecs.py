"""`python -m bench.netlink_codecs`: cni's rtnetlink codec against pyroute2's own message classes.

Both stacks talk to the kernel over the same kind of socket: a plain NETLINK_ROUTE socket made
inside a scratch netns (lo and a veth pair), no asyncio, no pyroute2 socket class. One round is
the plugin's kind of traffic: a link dump, a link by name, a link set down and up (ACKed), an
address dump. Each reply is read into the same facts (index, name, MAC, MTU, up, master, kind,
PCI parent), so both sides do the work the plugin needs. Import cost is measured in fresh
interpreters (`-X importtime`, the module's cumulative time), since the plugin run without the
helper pays it on every call.

Run it on the host and in the VM (`python -m tests.rigs.vm '.venv/bin/python -m
bench.netlink_codecs'`); the figures are in cni/kernel/rtnl.py's docstring.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cni.kernel import netlink, rtnl

IMPORTS = {
    "cni codec + executor": "import cni.kernel.netlink",
    "pyroute2 messages": (
        "import pyroute2.netlink.rtnl.marshal, pyroute2.netlink.rtnl.ifinfmsg,"
        " pyroute2.netlink.rtnl.ifaddrmsg"
    ),
}
_CUMULATIVE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|")


def import_ms(statement: str, runs: int) -> float:
    """Median wall-clock import cost of `statement` in a fresh interpreter, in ms."""
    costs = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
        )
        # Top-level imports are the unindented lines; their cumulative times add up.
        top = [
            int(m.group(1))
            for line in done.stderr.splitlines()
            if (m := _CUMULATIVE.match(line)) and not line.split("|")[2].startswith("  ")
        ]
        costs.append(sum(top) / 1000)
    return statistics.median(costs)


@contextmanager
def scratch_netns() -> Iterator[str]:
    name = f"bench-nl-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "d1", "type", "veth", "peer", "name", "d2"],
            check=True,
        )
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def _ours(path: str) -> Callable[[], None]:
    ns = netlink.Netns(path)

    def round_trip() -> None:
        links = ns.links()
        d1 = ns.link("d1")
        assert d1 is not None and set(links) >= {"lo", "d1", "d2"}
        ns.set_state(d1.index, False)
        ns.set_state(d1.index, True)
        ns.addresses(1)

    return round_trip


class _Pyroute2:
    """pyroute2's ifinfmsg/ifaddrmsg and its rtnl marshal on a plain socket."""

    def __init__(self, path: str) -> None:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl  # noqa: PLC0415

        self._ifinfmsg, self._ifaddrmsg = ifinfmsg, ifaddrmsg
        self._marshal = MarshalRtnl()
        self._sock = socket.socket(fileno=netlink._netlink_socket_in(path))
        self._sock.bind((0, 0))
        self._seq = 0

    def _request(self, msg: Any, kind: int, flags: int) -> list[Any]:
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags | rtnl.NLM_F_REQUEST
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        replies: list[Any] = []
        while True:
            for reply in self._marshal.parse(self._sock.recv(1 << 18), self._seq):
                header = reply["header"]
                if header["sequence_number"] != self._seq:
                    continue
                if header["error"] is not None:
                    raise header["error"]
                if header["type"] in (rtnl.NLMSG_ERROR, rtnl.NLMSG_DONE):
                    return replies
                replies.append(reply)
                if not header["flags"] & rtnl.NLM_F_MULTI and not flags & rtnl.NLM_F_ACK:
                    return replies

    @staticmethod
    def _facts(msg: Any) -> tuple[Any, ...]:
        info = msg.get_attr("IFLA_LINKINFO")
        return (
            msg["index"],
            msg.get_attr("IFLA_IFNAME"),
            msg.get_attr("IFLA_ADDRESS"),
            msg.get_attr("IFLA_MTU"),
            bool(msg["flags"] & rtnl.IFF_UP),
            msg.get_attr("IFLA_MASTER"),
            info.get_attr("IFLA_INFO_KIND") if info is not None else None,
            msg.get_attr("IFLA_PARENT_DEV_NAME"),
        )

    def links(self) -> dict[str, tuple[Any, ...]]:
        msg = self._ifinfmsg()
        found = (self._facts(m) for m in self._request(msg, rtnl.RTM_GETLINK, rtnl.NLM_F_DUMP))
        return {facts[1]: facts for facts in found}

    def link(self, name: str) -> tuple[Any, ...]:
        msg = self._ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        return self._facts(self._request(msg, rtnl.RTM_GETLINK, 0)[0])

    def set_state(self, index: int, up: bool) -> None:
        msg = self._ifinfmsg()
        msg["index"] = index
        msg["flags"] = rtnl.IFF_UP if up else 0
        msg["change"] = rtnl.IFF_UP
        self._request(msg, rtnl.RTM_NEWLINK, rtnl.NLM_F_ACK)

    def addresses(self, index: int) -> set[str]:
        msg = self._ifaddrmsg()
        replies = self._request(msg, rtnl.RTM_GETADDR, rtnl.NLM_F_DUMP)
        return {
            f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in replies if m["index"] == index
        }


def _theirs(path: str) -> Callable[[], None]:
    ns = _Pyroute2(path)

    def round_trip() -> None:
        links = ns.links()
        d1 = ns.link("d1")
        assert set(links) >= {"lo", "d1", "d2"}
        ns.set_state(d1[0], False)
        ns.set_state(d1[0], True)
        ns.addresses(1)

    return round_trip


REQUESTS_PER_ROUND = 5


def per_request_ms(round_trip: Callable[[], None], rounds: int) -> float:
    round_trip()  # first use: lazy imports, NLA class caches
    started = time.perf_counter()
    for _ in range(rounds):
        round_trip()
    return (time.perf_counter() - started) * 1000 / rounds / REQUESTS_PER_ROUND


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netlink_codecs", description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="request rounds per stack")
    parser.add_argument("--import-runs", type=int, default=5, help="fresh interpreters each")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.uname().release}, load {os.getloadavg()[0]:.2f}")
    for what, statement in IMPORTS.items():
        print(f"import {what}: {import_ms(statement, args.import_runs):.1f} ms")
    with scratch_netns() as path:
        ours, theirs = _ours(path), _theirs(path)
        # Alternate, so that a change in the machine's load hits both stacks alike.
        a, b = [], []
        for _ in range(3):
            a.append(per_request_ms(ours, args.rounds // 3))
            b.append(per_request_ms(theirs, args.rounds // 3))
    mine, pyroute2 = statistics.median(a), statistics.median(b)
    print(f"per request, cni codec: {mine:.3f} ms")
    print(f"per request, pyroute2 messages: {pyroute2:.3f} ms ({pyroute2 / mine:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
