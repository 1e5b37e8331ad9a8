"""What the node allows a caller, whatever it sends (issue 21): run for real on this host.

The helper (`bin/bond serve`) serves any root process that reaches its socket, so each request
below is one such a process could send, and each is refused with a CNI error naming what and
why. Real parts: the built helper and client, real network namespaces (one stands for the node:
the helper runs inside it, as the chart's runs in the node's; one for a pod) and veth links
("node links"), Debian's IPAM plugins, a real LD_PRELOAD library. Nothing here needs the bonding
module: every refusal comes before a bond would be made. What does need it (a move of node links
that is allowed, the shipped helper ignoring the kill point through a whole ADD) is in
test_helper_kernel.py.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cni.core.policy import HOST_LINKS_ENV, IPAM_PATH
from cni.plugin.faults import KILL_AFTER
from tests.cni.conftest import bond_config, require
from tests.cni.helper_rig import BOND, FROM_SOURCE, Helper, call, running_helper
from tests.rigs.netns import ip, ip_batch

CNI_PATH = "/usr/lib/cni"
HOST_LINKS = {"linksInContainer": False, "allowHostLinks": True}


@pytest.fixture(autouse=True)
def _bundle() -> None:
    require(BOND, "run `make build` (./build.sh)")


@dataclass(frozen=True)
class Node:
    """A netns standing for the node (two veth "node links" net1, net2, down) and a pod's."""

    netns: str
    pod: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def pod_path(self) -> str:
        return f"/run/netns/{self.pod}"

    @property
    def inside(self) -> list[str]:
        """The command prefix that runs a process in the node's netns."""
        return ["ip", "netns", "exec", self.netns]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": self.pod_path,
            "CNI_IFNAME": "bond0",
            "CNI_PATH": CNI_PATH,
            **extra,
        }

    def links(self, netns: str) -> list[str]:
        return sorted(link["ifname"] for link in json.loads(ip("-j", "link", "show", netns=netns)))


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    tag = secrets.token_hex(3)
    made = Node(f"bi-{tag}-node", f"bi-{tag}-pod")
    try:
        ip_batch([f"netns add {made.netns}", f"netns add {made.pod}"])
        ip_batch(
            [
                "link set lo up",
                "link add net1 type veth peer name peer1",
                "link add net2 type veth peer name peer2",
            ],
            netns=made.netns,
        )
        yield made
    finally:
        ip_batch([f"netns del {made.netns}", f"netns del {made.pod}"], force=True)


@pytest.fixture(scope="module")
def helper(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    """The helper as the chart runs it by default, in the node's netns."""
    sock = tmp_path_factory.mktemp("policy") / "run" / "helper.sock"
    with running_helper(sock, "--cni-path", CNI_PATH, user=node.inside) as running:
        yield running


def _refused(answer: tuple[int, bytes, str], code: int, msg: str) -> dict[str, Any]:
    rc, out, err = answer
    assert rc == 1 and out, (out, err)
    error: dict[str, Any] = json.loads(out)
    assert error["code"] == code and msg in error["msg"], error
    assert "running in process" not in err  # the helper answered it: no fallback ran it
    return error


# --- CNI_NETNS: only the runtime's netns folders, never the node's own netns -----------------

OUTSIDE = [
    "/proc/self/ns/net",
    "/proc/1/ns/net",
    "/run/netns/../../proc/self/ns/net",
    "/run/netns/./x",
    "/run/netns/sub/x",
    "/run/netns",
    "/tmp/netns",
    "run/netns/x",
]


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_netns_paths_outside_the_runtime_folders_are_refused(
    node: Node, helper: Helper, command: str
) -> None:
    served = helper.served(command)
    conf = bond_config("1.0.0", prevResult={"cniVersion": "1.0.0"})
    for path in OUTSIDE:
        answer = call(command, conf, node.env(CNI_NETNS=path), socket=helper.socket)
        error = _refused(answer, 4, f"CNI_NETNS {path!r} is not a netns the bond CNI helper serves")
        assert "/run/netns/<name> or /var/run/netns/<name>" in error["details"]
        assert "bond serve --proc-netns" in error["details"]
    assert helper.served(command) == served + len(OUTSIDE)
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]


def test_the_node_netns_pinned_in_a_runtime_folder_is_refused_by_inode(
    node: Node, helper: Helper, tmp_path: Path
) -> None:
    """The helper runs in the node's netns, which is pinned at /run/netns/<node> here: a path the
    folder rule passes. The inode says it is the helper's own, and every command is refused, with
    the helper and in process, before a link is touched; so is a symlink to it planted there, and
    with --proc-netns the node's netns by /proc/<pid>/ns/net."""
    conf = bond_config("1.0.0", prevResult={"cniVersion": "1.0.0"})
    own = "is the bond plugin's own network namespace (the node's)"
    for command in ("ADD", "CHECK", "DEL"):
        env = node.env(CNI_NETNS=node.path)
        _refused(
            call(command, conf, env, socket=helper.socket), 4, f"CNI_NETNS {node.path!r} {own}"
        )
        _refused(call(command, conf, env, user=node.inside), 4, own)  # the plugin in process
    link = Path("/run/netns") / f"{node.netns}-link"
    link.symlink_to(node.path)
    try:
        answer = call("ADD", conf, node.env(CNI_NETNS=str(link)), socket=helper.socket)
        _refused(answer, 4, f"CNI_NETNS {str(link)!r} is a symlink")
    finally:
        link.unlink()
    sock = tmp_path / "run" / "helper.sock"
    with running_helper(sock, "--proc-netns", user=node.inside) as proc_helper:
        assert "netns in /run/netns, /var/run/netns and /proc/<pid>/ns/net" in proc_helper.log()
        path = f"/proc/{proc_helper.proc.pid}/ns/net"  # `ip netns exec` execs the helper
        answer = call("ADD", conf, node.env(CNI_NETNS=path), socket=proc_helper.socket)
        _refused(answer, 4, f"CNI_NETNS {path!r} {own}")
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]
    for name in ("net1", "net2"):
        assert "master" not in json.loads(ip("-d", "-j", "link", "show", name, netns=node.netns))[0]


# --- node links: only where the node allows it, never one carrying a default route -----------


def test_host_links_need_the_node_to_allow_them(node: Node, helper: Helper) -> None:
    """A NAD's `linksInContainer: false, allowHostLinks: true` (any namespace user writes
    those) moved both of a test host's links into the netns the caller named. Now the node
    decides: refused by the default helper and by the plugin the runtime runs, both naming how
    the node would allow it."""
    conf = bond_config("1.0.0", **HOST_LINKS)
    error = _refused(call("ADD", conf, node.env(), socket=helper.socket), 7, "'linksInContainer'")
    assert "bond serve --allow-host-links" in error["details"]
    assert "allowHostLinks in the config is not enough" in error["details"]
    error = _refused(call("ADD", conf, node.env(), user=node.inside), 7, "'linksInContainer'")
    assert f"{HOST_LINKS_ENV}=true in the runtime's environment" in error["details"]
    # The runtime's variable is the node's setting in process, never a caller's to the helper.
    allow = node.env(**{HOST_LINKS_ENV: "true"})
    _refused(call("ADD", conf, allow, socket=helper.socket), 7, "'linksInContainer'")
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]
    assert node.links(node.pod) == ["lo"]


def test_a_node_link_carrying_a_default_route_is_never_moved(node: Node, tmp_path: Path) -> None:
    """Even where the node allows host links: net2 carries a default route (one IPv4 in the main
    table, one IPv6 in another), so nothing moves, net1 included, though it comes first."""
    ip("link", "set", "net2", "up", netns=node.netns)
    ip("route", "add", "default", "dev", "net2", netns=node.netns)
    ip("-6", "route", "add", "default", "dev", "net2", "table", "7", netns=node.netns)
    conf = bond_config("1.0.0", **HOST_LINKS)
    carries = "host link 'net2' from 'links' carries the node's default route"
    try:
        sock = tmp_path / "run" / "helper.sock"
        with running_helper(sock, "--allow-host-links", user=node.inside) as allowing:
            assert "host links allowed" in allowing.log()
            _refused(call("ADD", conf, node.env(), socket=allowing.socket), 7, carries)
        allow = node.env(**{HOST_LINKS_ENV: "true"})
        _refused(call("ADD", conf, allow, user=node.inside), 7, carries)
        ip("route", "del", "default", "dev", "net2", netns=node.netns)
        _refused(call("ADD", conf, allow, user=node.inside), 7, carries)  # the IPv6 one alone
    finally:
        for each in ("-4", "-6"):
            subprocess.run(
                ["ip", "-n", node.netns, each, "route", "flush", "table", "all", "dev", "net2"],
                check=False,
            )
        ip("link", "set", "net2", "down", netns=node.netns)
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]
    assert node.links(node.pod) == ["lo"]


# --- IPAM: an allowlist, and the CNI variables only --------------------------------------------


def _ipam_bin(directory: Path, name: str, record: Path) -> Path:
    """A CNI bin dir with `name`, a shell IPAM plugin that records the environment it was
    exec'd with (its own /proc environ, exactly) and answers a DEL."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/environ > {record}\n")
    script.chmod(0o755)
    return directory


def _preload(directory: Path, marker: Path) -> Path:
    """A real LD_PRELOAD library whose constructor leaves `marker`: what a caller would use."""
    source = directory / "evil.c"
    source.write_text(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void run(void) {\n"
        f'    int fd = open("{marker}", O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd);\n'
        "}\n"
    )
    library = directory / "evil.so"
    cc = shutil.which("cc") or "cc"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def test_ipam_plugins_only_from_the_node_allowlist(
    node: Node, helper: Helper, tmp_path: Path
) -> None:
    """`ipam.type` may name any binary of the CNI bin folder: `bridge` and a recording plugin
    there are refused by the default helper (host-local, static, dhcp, whereabouts), naming the
    field and the allowlist; the same helper told to allow the recorder does run it."""
    record = tmp_path / "env"
    bin_dir = _ipam_bin(tmp_path / "bin", "recorder", record)
    (bin_dir / "bridge").symlink_to(f"{CNI_PATH}/bridge")
    for ipam_type in ("bridge", "recorder", "sh"):
        conf = bond_config("1.0.0", ipam={"type": ipam_type})
        for command in ("ADD", "DEL", "CHECK"):
            error = _refused(
                call(command, conf, node.env(), socket=helper.socket), 7, "'ipam.type'"
            )
            assert f"{ipam_type!r} is not an IPAM plugin the bond CNI helper runs" in error["msg"]
            assert "allowed: dhcp, host-local, static, whereabouts" in error["msg"]
            assert "bond serve --ipam-plugins" in error["details"]
    sock = tmp_path / "run" / "helper.sock"
    args = ("--cni-path", str(bin_dir), "--ipam-plugins", "recorder")
    with running_helper(sock, *args, user=node.inside) as allowing:
        assert "IPAM plugins recorder from" in allowing.log()
        conf = bond_config("1.0.0", ipam={"type": "recorder"})
        assert call("DEL", conf, node.env(), socket=allowing.socket) == (0, b"", "")
    assert record.exists()


def test_ipam_gets_the_cni_variables_only(node: Node, tmp_path: Path) -> None:
    """The caller's environment went to the IPAM plugin, LD_PRELOAD included: a real library
    that leaves a marker, preloaded into a (dynamically linked) shell IPAM. Now the plugin gets
    the CNI variables and a fixed PATH, through the helper and in process alike."""
    record, marker = tmp_path / "env", tmp_path / "preloaded"
    bin_dir = _ipam_bin(tmp_path / "bin", "recorder", record)
    library = _preload(tmp_path, marker)
    # The library works: exec'd with it, the recorder leaves the marker.
    subprocess.run([str(bin_dir / "recorder")], env={"LD_PRELOAD": str(library)}, check=True)
    assert marker.exists()
    marker.unlink()
    caller = {
        "LD_PRELOAD": str(library),
        "PATH": f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_ARGS": "K8S_POD_NAME=p1",
        "SOMETHING_ELSE": "x",
    }
    expected = {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": node.pod_path,
        "CNI_IFNAME": "bond0",
        "CNI_ARGS": "K8S_POD_NAME=p1",
        "CNI_PATH": str(bin_dir),
        "PATH": IPAM_PATH,
    }
    conf = bond_config("1.0.0", ipam={"type": "recorder"})
    sock = tmp_path / "run" / "helper.sock"
    args = ("--cni-path", str(bin_dir), "--ipam-plugins", "recorder")
    with running_helper(sock, *args, user=node.inside) as running:
        env = node.env(**caller, CNI_PATH="/elsewhere")
        assert call("DEL", conf, env, socket=running.socket) == (0, b"", "")
        assert running.served("DEL") == 1
    recorded = dict(line.split("=", 1) for line in record.read_text().splitlines())
    assert recorded == expected and not marker.exists()
    record.unlink()
    # In process the plugin's own environment is the runtime's (here no LD_PRELOAD, which
    # would load into `ip` and the plugin themselves); its IPAM still gets the CNI ones only.
    in_process = {k: v for k, v in caller.items() if k != "LD_PRELOAD"}
    env = node.env(**in_process, CNI_PATH=str(bin_dir))
    assert call("DEL", conf, env, user=node.inside) == (0, b"", "")
    recorded = dict(line.split("=", 1) for line in record.read_text().splitlines())
    assert recorded == expected and not marker.exists()


# --- test hooks: left out of the shipped build ------------------------------------------------


def test_the_shipped_plugin_ignores_the_kill_point(node: Node) -> None:
    """BOND_CNI_TEST_KILL_AFTER ended the plugin after a named step of ADD, in any build, so a
    caller could stop the rollback. The built bin/bond has no such point: with it set to the
    first step, ADD goes on (here to the bond, which this host's kernel cannot make) and rolls
    back, node links returned. The same call to the plugin from source is SIGKILLed there (so
    this test sees the kill point when it is present), leaving the links in the pod for DEL."""
    conf = bond_config("1.0.0", **HOST_LINKS)
    env = node.env(**{HOST_LINKS_ENV: "true", KILL_AFTER: "links moved in"})
    rc, out, err = call("ADD", conf, env, user=node.inside)
    assert rc in (0, 1) and json.loads(out), err  # answered: not killed
    if rc == 0:  # a kernel with bonding: a whole bond, which DEL undoes
        assert call("DEL", conf, env, user=node.inside)[0] == 0
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]
    rc, out, err = call("ADD", conf, env, user=node.inside, plugin=FROM_SOURCE)
    assert rc == -9 and out == b"", err
    assert node.links(node.pod) == ["lo", "net1", "net2"]
    assert call("DEL", conf, env, user=node.inside, plugin=FROM_SOURCE) == (0, b"", "")
    assert node.links(node.netns) == ["lo", "net1", "net2", "peer1", "peer2"]
