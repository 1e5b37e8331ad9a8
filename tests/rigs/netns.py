"""Fixtures for `kernel` tests: a pod network namespace wired to a bridge "switch" and a peer host.

    pod netns                 switch netns                      peer netns
    net1 (veth, down) ---- swp1 \
                                 br0 ---- swp0 ---- eth0 192.0.2.1/24 (the gateway)
    net2 (veth, down) ---- swp2 /

net1/net2 stand in for two SR-IOV VFs; setting swp1 or swp2 down drops the carrier of its VF, as a
dead switch port would. Plain `ip` commands (iproute2), not pyroute2: imports cost seconds in the
VM.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

GATEWAY = "192.0.2.1"
PREFIX_LEN = 24


@dataclass(frozen=True)
class PodNet:
    pod_netns: str  # name under /run/netns
    pod_netns_path: str  # "/run/netns/<name>"
    links: tuple[str, str]  # ("net1", "net2") inside the pod netns, admin-down, no address
    switch_netns: str  # netns holding bridge "br0" with the VF peers
    switch_ports: tuple[str, str]  # the peers of net1/net2 on br0 (set one down: a port failure)
    peer_netns: str  # a host behind the switch
    gateway: str  # "192.0.2.1", on the peer host, subnet 192.0.2.0/24


def ip(*args: str, netns: str | None = None) -> str:
    """Run `ip [-n netns] args...`; return stdout; raise with ip's own message on failure."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return run(argv)


def in_netns(netns: str, *argv: str) -> str:
    """Run a command inside a named netns (`ip netns exec`); return stdout."""
    return run(["ip", "netns", "exec", netns, *argv])


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip() or done.stdout}"
        )
    return done.stdout


def succeeds(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def ping(netns: str, address: str, *, timeout_s: int = 1) -> bool:
    """One ICMP echo from `netns` to `address`; True if answered."""
    return succeeds(
        ["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", "1", "-W", str(timeout_s), address]
    )


def ip_batch(commands: list[str], *, netns: str | None = None, force: bool = False) -> None:
    """Run many `ip` commands in one process (`ip -batch`): each exec costs ~0.3 s under TCG.

    Stops at the first failing command (and raises) unless `force`, which runs them all.
    """
    argv = ["ip", *(["-n", netns] if netns else []), *(["-force"] if force else []), "-batch", "-"]
    done = subprocess.run(
        argv, input="".join(f"{c}\n" for c in commands), capture_output=True, text=True, check=False
    )
    if done.returncode != 0 and not force:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def _build(stack: contextlib.ExitStack, tag: str) -> PodNet:
    pod, switch, peer = f"bi-{tag}-pod", f"bi-{tag}-sw", f"bi-{tag}-peer"
    # Registered first, so a failure half-way through still removes whatever was made.
    stack.callback(_delete_netns, pod, switch, peer)
    links, ports = ("net1", "net2"), ("swp1", "swp2")
    ip_batch(
        [
            *(f"netns add {netns}" for netns in (pod, switch, peer)),
            *(
                f"link add {link} netns {pod} type veth peer name {port} netns {switch}"
                for link, port in zip(links, ports, strict=True)
            ),
            f"link add eth0 netns {peer} type veth peer name swp0 netns {switch}",
        ]
    )
    ip_batch(
        [
            "link set lo up",
            "link add br0 type bridge",
            *(f"link set {port} master br0 up" for port in ("swp0", *ports)),
            "link set br0 up",
        ],
        netns=switch,
    )
    ip_batch(
        ["link set lo up", f"addr add {GATEWAY}/{PREFIX_LEN} dev eth0", "link set eth0 up"],
        netns=peer,
    )
    ip_batch(["link set lo up"], netns=pod)
    return PodNet(
        pod_netns=pod,
        pod_netns_path=f"/run/netns/{pod}",
        links=links,
        switch_netns=switch,
        switch_ports=ports,
        peer_netns=peer,
        gateway=GATEWAY,
    )


def _delete_netns(*names: str) -> None:
    # Deleting a netns destroys its links, and a veth dies with either end: nothing else to undo.
    ip_batch([f"netns delete {netns}" for netns in names], force=True)


@contextlib.contextmanager
def pod_network() -> Iterator[PodNet]:
    """A fresh pod netns, two veth "VFs" on a bridge switch, a gateway host; all removed on exit."""
    with contextlib.ExitStack() as stack:
        yield _build(stack, secrets.token_hex(4))


@pytest.fixture
def pod_net() -> Iterator[PodNet]:
    """`pod_network()` for one test: names unique to it, removed after it even when it fails."""
    with pod_network() as net:
        yield net


@pytest.fixture(scope="session")
def bonding() -> None:
    """The bonding module, loaded once; fails (never skips) where it cannot be."""
    # max_bonds=0: no stray bond0 in the root namespace.
    done = subprocess.run(
        ["modprobe", "bonding", "max_bonds=0"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"`modprobe bonding` failed ({done.stderr.strip()}): kernel tests must run in the "
            "kernel VM (`make test-kernel`); run `make deps` if the kernel is missing",
            pytrace=False,
        )


def bonding_status(netns: str, bond: str) -> str:
    """The kernel's own report on a bond: /proc/net/bonding/<bond>, read inside `netns`."""
    return in_netns(netns, "cat", f"/proc/net/bonding/{bond}")


def active_slave(netns: str, bond: str) -> str | None:
    """The bond's currently active slave (active-backup), or None if it has none."""
    for line in bonding_status(netns, bond).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Currently Active Slave":
            return None if value.strip() == "None" else value.strip()
    return None
