"""Helpers for the bond plugin's kernel tests: call the plugin in-process, read the kernel back."""

from __future__ import annotations

import json
from typing import Any

from cni.plugin import dispatch
from tests.rigs.netns import PodNet, ip

CNI_PATH = "/usr/lib/cni"


def invoke(
    command: str,
    net: PodNet | None,
    conf: dict[str, Any],
    *,
    container: str = "c1",
    ifname: str = "bond0",
    netns: str | None = None,
    cni_path: str = CNI_PATH,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """One plugin call in this process (the logic under test, without per-call imports);
    `extra_env` adds to its environment (the runtime's: e.g. BOND_CNI_ALLOW_HOST_LINKS)."""
    env = {
        **(extra_env or {}),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns if netns is not None else (net.pod_netns_path if net else ""),
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path,
    }
    return dispatch.run(command, env, json.dumps(conf).encode())


def link_details(net: PodNet, name: str) -> dict[str, Any] | None:
    """`ip -d -j link show` of one link in the pod, or None when it does not exist."""
    try:
        out = ip("-d", "-j", "link", "show", "dev", name, netns=net.pod_netns)
    except RuntimeError:
        return None
    found: list[dict[str, Any]] = json.loads(out)
    return found[0] if found else None


def addresses(net: PodNet, name: str) -> set[str]:
    out = json.loads(ip("-j", "addr", "show", "dev", name, netns=net.pod_netns))
    return {
        f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"] if a.get("scope") != "link"
    }


def slaves_released(net: PodNet) -> bool:
    """No bond in the pod and both links back to no master."""
    return link_details(net, "bond0") is None and all(
        (d := link_details(net, n)) is not None and "master" not in d for n in net.links
    )
