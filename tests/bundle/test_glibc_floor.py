"""The bundle (bin/bond.d) runs on any x86_64 node from glibc 2.28 on: it carries its own loader
and glibc, and the node lends it nothing but the kernel.

Shown three ways: no ELF file in it needs a glibc symbol newer than 2.28 from the node (readelf
over every ELF, libraries that travel with it excluded); it answers in a root holding no libc at
all (busybox-static only, no /proc); and in a Debian bullseye root (glibc 2.31, older than the
2.35 the build host's libpython needs) it runs VERSION, ADD and DEL with bullseye's own host-local.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bundle.rootfs import (
    BUNDLE,
    NETNS_IN_ROOT,
    Root,
    bullseye_rootfs,
    overlay,
    require_root_tools,
    run_in,
)

FLOOR = (2, 28)  # RHEL / RHCOS 8
SPEC_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
ENTRY_POINTS = ("bond", "bond-plugin")  # what the runtime and the client exec: static


def _readelf(flag: str, path: Path) -> str:
    return subprocess.run(
        ["readelf", "--wide", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout


def _elves() -> list[Path]:
    return sorted(
        p
        for p in BUNDLE.rglob("*")
        if p.is_file() and not p.is_symlink() and p.read_bytes()[:4] == b"\x7fELF"
    )


def _needed(path: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", _readelf("-d", path))


def _version_needs(path: Path) -> dict[str, set[str]]:
    """{library: versions} from the .gnu.version_r section (what `objdump -T` shows per symbol)."""
    needs: dict[str, set[str]] = {}
    library = ""
    for line in _readelf("-V", path).splitlines():
        if m := re.search(r"File: (\S+)", line):
            library = m.group(1)
            needs.setdefault(library, set())
        elif (m := re.search(r"Name: (\S+)", line)) and library:
            needs[library].add(m.group(1))
    return needs


def _glibc_version(name: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", name)
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _travelling() -> set[str]:
    """Libraries found inside the bundle: the loader runs the plugin with --library-path
    _glibc:_internal (tools/plugin-launcher.c)."""
    return {p.name for d in ("_glibc", "_internal") for p in (BUNDLE / d).iterdir()}


@pytest.fixture(autouse=True)
def _bundle() -> None:
    if not (BUNDLE / "bond").exists():
        pytest.fail(f"{BUNDLE} is missing: run `make build` (./build.sh)", pytrace=False)


def test_nothing_in_the_bundle_needs_a_glibc_newer_than_2_28_from_the_node() -> None:
    travelling = _travelling()
    too_new, from_node = [], set()
    for elf in _elves():
        name = str(elf.relative_to(BUNDLE))
        from_node |= {lib for lib in _needed(elf) if lib not in travelling}
        for library, versions in _version_needs(elf).items():
            if library in travelling:
                continue
            for version in versions:
                parsed = _glibc_version(version)
                if parsed is not None and parsed > FLOOR:
                    too_new.append(f"{name} needs {version} from the node's {library}")
    assert too_new == []
    # Today the node gives nothing at all: the loader and glibc travel in _glibc/.
    assert from_node == set()
    assert (BUNDLE / "_glibc" / "ld-linux-x86-64.so.2").is_file()
    # The runtime execs `bond`, which execs `bond-plugin`: both static, so the node's loader,
    # whatever its age, is never asked to load anything of ours.
    for entry in ENTRY_POINTS:
        assert _needed(BUNDLE / entry) == [], entry
        assert "INTERP" not in _readelf("-l", BUNDLE / entry), entry


def test_the_scan_sees_what_the_build_hosts_libpython_needs() -> None:
    """The check above can fail: libpython itself needs glibc 2.35 symbols, met only because
    its libm travels with it."""
    (libpython,) = (BUNDLE / "_internal").glob("libpython3*.so*")
    needs = _version_needs(libpython)
    newest = max(v for vs in needs.values() for v in map(_glibc_version, vs) if v is not None)
    assert newest > FLOOR
    assert {"libm.so.6", "libc.so.6"} <= needs.keys() & _travelling()


def _cni_env(command: str, netns: str = "/run/netns/none") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"c-{uuid.uuid4().hex[:8]}",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",
        "PATH": "/usr/bin:/bin",
    }


def _bond_conf(**extra: Any) -> bytes:
    conf = {
        "cniVersion": "1.0.0",
        "name": "oldglibc",
        "type": "bond",
        "mode": "active-backup",
        "miimon": "100",
        "linksInContainer": True,
        "links": [{"name": "net1"}, {"name": "net2"}],
        **extra,
    }
    return json.dumps(conf).encode()


def _answer(done: subprocess.CompletedProcess[bytes]) -> Any:
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Root:
    """busybox-static and the bundle, nothing else: no libc, no loader, no /proc."""
    require_root_tools()
    root = Root(tmp_path_factory.mktemp("no-libc"))
    (root.lower / "bin").mkdir()
    busybox = shutil.which("busybox") or "/bin/busybox"
    static = "INTERP" not in _readelf("-l", Path(busybox).resolve())
    assert static, f"{busybox} is not static: install busybox-static (tools/ensure-apt.sh)"
    shutil.copy2(busybox, root.lower / "bin" / "busybox")
    (root.lower / "bin" / "sh").symlink_to("busybox")
    root.install_bundle()
    return root


def test_the_bare_root_holds_no_libc(bare: Root) -> None:
    outside = [
        p for p in bare.lower.rglob("*") if "bond.d" not in p.parts and re.search(r"\.so", p.name)
    ]
    assert outside == []


@pytest.mark.parametrize("version", SPEC_VERSIONS)
def test_version_where_there_is_no_libc_at_all(bare: Root, version: str) -> None:
    conf = json.dumps({"cniVersion": version}).encode()
    done = run_in(bare, ["/opt/cni/bin/bond"], _cni_env("VERSION"), conf, proc=False)
    assert done.returncode == 0, done.stderr.decode()
    assert _answer(done) == {"cniVersion": version, "supportedVersions": SPEC_VERSIONS}


def test_bad_config_is_a_clean_cni_error_where_there_is_no_libc(bare: Root) -> None:
    env = _cni_env("ADD")
    garbled = run_in(bare, ["/opt/cni/bin/bond"], env, b"{oops", proc=False)
    assert (garbled.returncode, _answer(garbled)["code"]) == (1, 6)
    wrong = run_in(bare, ["/opt/cni/bin/bond"], env, _bond_conf(mode="nope"), proc=False)
    answer = _answer(wrong)
    assert (wrong.returncode, answer["code"]) == (1, 7) and "'mode'" in answer["msg"]


# --- Debian bullseye: glibc 2.31 --------------------------------------------------------------


@pytest.fixture(scope="module")
def bullseye(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    require_root_tools()
    root = overlay(bullseye_rootfs(), tmp_path_factory.mktemp("bullseye"))
    root.install_bundle()
    yield root


@pytest.mark.images
def test_the_bullseye_root_has_glibc_2_31(bullseye: Root) -> None:
    libc = list((bullseye.lower / "lib" / "x86_64-linux-gnu").glob("libc-*.so"))
    assert [p.name for p in libc] == ["libc-2.31.so"]
    # Without the bundle's own glibc the plugin cannot start here: the build host's libpython.
    plain = run_in(bullseye, ["/opt/cni/bin/bond.d/bond-plugin.bin"], _cni_env("VERSION"), b"{}")
    assert plain.returncode != 0
    assert b"GLIBC_2.3" in plain.stderr  # e.g. "version `GLIBC_2.35' not found"


@pytest.mark.images
@pytest.mark.parametrize("version", SPEC_VERSIONS)
def test_version_in_bullseye(bullseye: Root, version: str) -> None:
    conf = json.dumps({"cniVersion": version}).encode()
    done = run_in(bullseye, ["/opt/cni/bin/bond"], _cni_env("VERSION"), conf)
    assert done.returncode == 0, done.stderr.decode()
    assert _answer(done) == {"cniVersion": version, "supportedVersions": SPEC_VERSIONS}


def _links(netns: str) -> list[dict[str, Any]]:
    shown = subprocess.run(
        ["ip", "-n", netns, "-j", "-d", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    links: list[dict[str, Any]] = json.loads(shown)
    return links


@pytest.fixture
def pod_netns() -> Iterator[str]:
    """A pod's netns with its two legs, as SR-IOV CNI leaves them (veth: no VFs here)."""
    name = f"bond-oldglibc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for leg, peer in (("net1", "peer1"), ("net2", "peer2")):
            subprocess.run(
                ["ip", "-n", name, "link", "add", leg, "type", "veth", "peer", "name", peer],
                check=True,
            )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _leases(root: Root, network: str) -> list[str]:
    folder = root.writable / "var" / "lib" / "cni" / "networks" / network
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


IPAM = {"type": "host-local", "subnet": "10.77.0.0/24"}


@pytest.mark.images
def test_add_in_bullseye_fails_cleanly_with_the_kernels_refusal(
    bullseye: Root, pod_netns: str
) -> None:
    """This host has no bonding module: the ADD gets as far as asking the kernel for the bond,
    answers the kernel's refusal as a CNI error, and leaves the pod and the leases as they were."""
    before = _links(pod_netns)
    env = _cni_env("ADD", NETNS_IN_ROOT)
    done = run_in(
        bullseye, ["/opt/cni/bin/bond"], env, _bond_conf(ipam=IPAM, name="add"), netns=pod_netns
    )
    answer = _answer(done)
    assert done.returncode == 1
    assert answer["code"] == 100
    assert answer["msg"] == "netlink: create bond bond0 failed"
    assert "Operation not supported" in answer["details"]
    assert _links(pod_netns) == before
    assert _leases(bullseye, "add") == []


@pytest.mark.images
def test_del_in_bullseye_releases_the_lease_through_bullseyes_host_local(
    bullseye: Root, pod_netns: str
) -> None:
    """host-local (bullseye's, on bullseye's glibc) is run by the plugin on DEL: the bundle's
    glibc stays its own and does not leak into the IPAM plugin it execs."""
    env = _cni_env("ADD", NETNS_IN_ROOT)
    # Bullseye's host-local (0.9.0) speaks CNI up to 0.4.0.
    ipam_conf = json.dumps({"cniVersion": "0.4.0", "name": "del", "ipam": IPAM}).encode()
    leased = run_in(bullseye, ["/usr/lib/cni/host-local"], env, ipam_conf, netns=pod_netns)
    assert leased.returncode == 0, leased.stderr.decode()
    assert "10.77.0." in json.loads(leased.stdout)["ips"][0]["address"]
    assert len(_leases(bullseye, "del")) >= 1

    env["CNI_COMMAND"] = "DEL"
    conf = _bond_conf(ipam=IPAM, name="del", cniVersion="0.4.0")
    done = run_in(bullseye, ["/opt/cni/bin/bond"], env, conf, netns=pod_netns)
    assert (done.returncode, _answer(done)) == (0, None), done.stderr.decode()
    assert [n for n in _leases(bullseye, "del") if n[0].isdigit()] == []
    # DEL of nothing, and DEL after the netns is gone, succeed too.
    again = run_in(bullseye, ["/opt/cni/bin/bond"], env, conf, netns=pod_netns)
    assert (again.returncode, _answer(again)) == (0, None), again.stderr.decode()
    gone = run_in(bullseye, ["/opt/cni/bin/bond"], {**env, "CNI_NETNS": "/run/netns/gone"}, conf)
    assert (gone.returncode, _answer(gone)) == (0, None), gone.stderr.decode()
