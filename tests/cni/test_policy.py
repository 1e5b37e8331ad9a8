"""cni.core.policy: what the node allows a call, one table per rule."""

from __future__ import annotations

import pytest

from cni.core.errors import CNIError
from cni.core.policy import (
    DEFAULT_IPAM_PLUGINS,
    IPAM_PATH,
    NodePolicy,
    check_host_links,
    check_ipam_type,
    check_netns_path,
    ipam_env,
)

HELPER = NodePolicy.helper(host_links=False, ipam_plugins=DEFAULT_IPAM_PLUGINS, proc_netns=False)
PROC = NodePolicy.helper(host_links=False, ipam_plugins=DEFAULT_IPAM_PLUGINS, proc_netns=True)
RUNTIME = NodePolicy.in_process({})


@pytest.mark.parametrize(
    ("path", "policy", "served"),
    [
        ("/run/netns/cni-1234", HELPER, True),
        ("/var/run/netns/cni-1234", HELPER, True),
        ("", HELPER, True),  # DEL without a netns: nothing to open
        ("/run/netns/a/b", HELPER, False),
        ("/run/netns/../netns/x", HELPER, False),
        ("/run/netns//x", HELPER, False),
        ("/run/netns/", HELPER, False),
        ("/run/netns", HELPER, False),
        ("run/netns/x", HELPER, False),
        ("/proc/self/ns/net", HELPER, False),
        ("/proc/42/ns/net", HELPER, False),
        ("/proc/42/ns/net", PROC, True),
        ("/proc/self/ns/net", PROC, False),
        ("/proc/thread-self/ns/net", PROC, False),
        ("/proc/0/ns/net", PROC, False),
        ("/proc/42/ns/mnt", PROC, False),
        ("/proc/self/ns/net", RUNTIME, True),  # the runtime's own call: its path is trusted
        ("/anything", RUNTIME, True),
    ],
)
def test_netns_paths_the_helper_serves(path: str, policy: NodePolicy, served: bool) -> None:
    if served:
        check_netns_path(path, policy)
        return
    with pytest.raises(CNIError) as refused:
        check_netns_path(path, policy)
    assert refused.value.code == 4 and f"CNI_NETNS {path!r}" in refused.value.msg


def test_ipam_allowlist_and_host_links() -> None:
    check_ipam_type("host-local", HELPER)
    check_ipam_type("anything", RUNTIME)
    with pytest.raises(CNIError, match=r"'ipam\.type': 'bridge' is not an IPAM plugin"):
        check_ipam_type("bridge", HELPER)
    check_host_links(True, HELPER)
    with pytest.raises(CNIError, match="'linksInContainer'"):
        check_host_links(False, HELPER)
    with pytest.raises(CNIError, match="'linksInContainer'"):
        check_host_links(False, RUNTIME)
    check_host_links(False, NodePolicy.in_process({"BOND_CNI_ALLOW_HOST_LINKS": "true"}))


def test_ipam_env_is_the_cni_variables_and_a_fixed_path() -> None:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/opt/cni/bin",
        "LD_PRELOAD": "/tmp/evil.so",
        "PATH": "/tmp",
        "BOND_CNI_TEST_KILL_AFTER": "bond up",
    }
    assert ipam_env(env, "DEL") == {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/opt/cni/bin",
        "PATH": IPAM_PATH,
    }
