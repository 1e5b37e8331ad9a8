"""What the node allows a call, whatever its config and environment say.

The runtime's own call (the plugin exec'd in process) is trusted with its CNI_NETNS and CNI_PATH,
as the spec has it. The warm helper (`bond serve`) serves anything running as root that reaches
its socket, so there the node decides, through `bond serve`'s flags: which netns paths it opens,
which IPAM plugins it execs, and whether node links may move at all. A NAD's own fields
(`allowHostLinks`, `ipam.type`) are written by any user of its namespace and never suffice.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cni.core.errors import INVALID_CONFIG, INVALID_ENV, CNIError

# Where runtimes pin pod netns (containerd, CRI-O, podman): one file per pod, directly inside.
NETNS_FOLDERS = ("/run/netns", "/var/run/netns")
# The IPAM plugins a helper execs unless told otherwise (`bond serve --ipam-plugins`).
DEFAULT_IPAM_PLUGINS = ("host-local", "static", "dhcp", "whereabouts")
# The only variables an IPAM plugin gets (the spec's, plus PATH): never the caller's LD_PRELOAD.
IPAM_ENV = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
IPAM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Without the helper, the runtime's environment is the node's: this variable set to "true" there
# lets linksInContainer: false move node links (the helper has `bond serve --allow-host-links`).
HOST_LINKS_ENV = "BOND_CNI_ALLOW_HOST_LINKS"
_PROC_NETNS = re.compile(r"/proc/[1-9][0-9]*/ns/net")


@dataclass(frozen=True)
class NodePolicy:
    """The node's rules for one call. The default is the runtime's own call in process."""

    host_links: bool = False
    ipam_plugins: frozenset[str] | None = None  # None: any plugin in CNI_PATH
    netns_folders: tuple[str, ...] | None = None  # None: any netns path the runtime passes
    proc_netns: bool = False
    via: str = f"{HOST_LINKS_ENV}=true in the runtime's environment"

    @classmethod
    def in_process(cls, env: Mapping[str, str]) -> NodePolicy:
        return cls(host_links=env.get(HOST_LINKS_ENV, "").lower() == "true")

    @classmethod
    def helper(
        cls, *, host_links: bool, ipam_plugins: tuple[str, ...], proc_netns: bool
    ) -> NodePolicy:
        return cls(
            host_links=host_links,
            ipam_plugins=frozenset(ipam_plugins),
            netns_folders=NETNS_FOLDERS,
            proc_netns=proc_netns,
            via="bond serve --allow-host-links (the chart's cniInstaller.helper.allowHostLinks)",
        )


def check_netns_path(path: str, policy: NodePolicy) -> None:
    """Error 4 naming CNI_NETNS when the helper does not serve this path. Its shape only: that it
    is not a symlink, nor the node's own netns, is checked where it is opened."""
    if policy.netns_folders is None or not path:
        return
    folder, _, name = path.rpartition("/")
    if path == posixpath.normpath(path) and folder in policy.netns_folders and name:
        return
    if policy.proc_netns and _PROC_NETNS.fullmatch(path):
        return
    where = " or ".join(f"{f}/<name>" for f in policy.netns_folders)
    proc = (
        " or /proc/<pid>/ns/net"
        if policy.proc_netns
        else "; a runtime that passes /proc/<pid>/ns/net needs bond serve --proc-netns (the "
        "chart's cniInstaller.helper.procNetns: true)"
    )
    raise CNIError(
        INVALID_ENV,
        f"CNI_NETNS {path!r} is not a netns the bond CNI helper serves",
        f"the helper opens only {where}{proc}; or run the plugin without the helper "
        "(BOND_CNI_HELPER=off)",
    )


def own_netns_error(path: str) -> CNIError:
    return CNIError(
        INVALID_ENV,
        f"CNI_NETNS {path!r} is the bond plugin's own network namespace (the node's)",
        "a bond is made only in a pod's netns: pass the pod sandbox's netns path",
    )


def check_ipam_type(ipam_type: str, policy: NodePolicy) -> None:
    if policy.ipam_plugins is None or ipam_type in policy.ipam_plugins:
        return
    allowed = ", ".join(sorted(policy.ipam_plugins)) or "none"
    raise CNIError(
        INVALID_CONFIG,
        f"invalid bond config field 'ipam.type': {ipam_type!r} is not an IPAM plugin the bond "
        f"CNI helper runs; allowed: {allowed}",
        "add it to bond serve --ipam-plugins (the chart's cniInstaller.helper.ipamPlugins)",
    )


def check_host_links(links_in_container: bool, policy: NodePolicy) -> None:
    """linksInContainer: false moves node links into the pod: only where the node allows it."""
    if links_in_container or policy.host_links:
        return
    raise CNIError(
        INVALID_CONFIG,
        "invalid bond config field 'linksInContainer': false would move node links into the "
        "pod, and this node does not allow it",
        f"allowHostLinks in the config is not enough: the node allows it with {policy.via}",
    )


def ipam_env(env: Mapping[str, str], command: str) -> dict[str, str]:
    """An IPAM plugin's whole environment: the call's CNI variables and a fixed PATH."""
    built = {name: env[name] for name in IPAM_ENV if name in env}
    built["CNI_COMMAND"] = command
    built["PATH"] = IPAM_PATH
    return built
