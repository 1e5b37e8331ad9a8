"""Interface names: one rule for the webhook and the plugin, and the kernel agrees with it."""

from __future__ import annotations

import pytest

from cni.core.errors import CNIError
from cni.core.ifname import ifname_problem
from cni.kernel.netlink import Netns
from tests.rigs.netns import PodNet, ip

NAMES: list[tuple[object, str | None]] = [
    ("net1", None),
    ("bond0", None),
    ("eth7", None),
    ("a" * 15, None),
    ("v\u00e9th", None),  # 5 bytes: the kernel takes UTF-8
    ("a" * 16, "is longer than 15 characters"),
    ("\u00e9" * 8, "is 16 bytes in UTF-8, longer than the kernel's 15"),
    ("", "is empty"),
    (".", "is '.' or '..'"),
    ("..", "is '.' or '..'"),
    ("a/b", "contains '/'"),
    ("net:1", "contains ':'"),
    ("net%d", "contains '%'"),
    ("net 1", "contains whitespace"),
    ("net\t1", "contains whitespace"),
    ("net\x001", "contains a control character"),
    (None, "is a NoneType, not a string"),
    (7, "is a int, not a string"),
]


@pytest.mark.parametrize(("name", "problem"), NAMES, ids=[repr(n) for n, _ in NAMES])
def test_rule(name: object, problem: str | None) -> None:
    assert ifname_problem(name) == problem


# Strings the kernel can be sent, except the pod's own net1 and net2 (those exist already).
KERNEL_NAMES = [
    n
    for n, _ in NAMES
    if isinstance(n, str) and n and "\x00" not in n and n not in ("net1", "net2")
]


@pytest.mark.kernel
@pytest.mark.usefixtures("bonding")
@pytest.mark.parametrize("name", KERNEL_NAMES, ids=[repr(n) for n in KERNEL_NAMES])
def test_the_kernel_agrees(pod_net: PodNet, name: str) -> None:
    """What the rule accepts, the kernel creates under that very name; what it refuses, the
    kernel refuses too, or (for '%') creates under another name. The request goes out without
    any check of ours (the netlink executor does not validate names)."""
    with Netns(pod_net.pod_netns_path) as pod:
        before = set(pod.links())
        try:
            index = pod.create_bond(name, {}, None, None)
        except CNIError:
            assert ifname_problem(name) is not None
            return
        created = {link.index: link.name for link in pod.links().values()}
        pod.delete(index)
    if ifname_problem(name) is None:
        assert created[index] == name
    else:
        assert "%" in name and created[index] not in before and created[index] != name
    assert name not in ip("-o", "link", "show", netns=pod_net.pod_netns).split(": ")
