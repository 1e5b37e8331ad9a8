"""bin/bond is self-contained: it runs in a chroot holding only the bundle, libc and busybox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import bond_config, require

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bin" / "bond.d"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@pytest.fixture(autouse=True)
def _bundle() -> None:
    require(ROOT / "bin" / "bond", "run `make build` (./build.sh)")


def _elf_deps(path: Path) -> set[str]:
    done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    deps = set()
    for line in done.stdout.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                deps.add(part)
    return deps


@pytest.fixture(scope="module")
def chroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chroot")
    cni_bin = root / "opt" / "cni" / "bin"
    cni_bin.mkdir(parents=True)
    shutil.copytree(BUNDLE, cni_bin / "bond.d", symlinks=True)
    (cni_bin / "bond").symlink_to("bond.d/bond")
    # libc and friends: whatever the bundle's ELF files need from outside the bundle.
    needed: set[str] = set()
    for path in BUNDLE.rglob("*"):
        if path.is_file() and path.read_bytes()[:4] == b"\x7fELF":
            needed |= {d for d in _elf_deps(path) if not d.startswith(str(BUNDLE))}
    needed |= _elf_deps(Path(shutil.which("busybox") or "/bin/busybox"))
    for dep in needed:
        target = root / dep.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(dep), target)
    (root / "bin").mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    return root


def _run(root: Path, command: str, stdin: Any, **env: str) -> tuple[int, Any, str]:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    proc = subprocess.run(
        [CHROOT, str(root), "/bin/sh", "-c", "exec /opt/cni/bin/bond"],
        input=raw,
        env={"CNI_COMMAND": command, "PATH": "/bin", **env},
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr.decode()


def test_chroot_has_no_python(chroot: Path) -> None:
    outside = [p for p in chroot.rglob("*") if "python" in p.name and "bond.d" not in str(p)]
    assert outside == []
    assert not (chroot / "usr" / "bin").exists() or not any((chroot / "usr" / "bin").iterdir())


def test_version_in_chroot(chroot: Path) -> None:
    rc, out, err = _run(chroot, "VERSION", {"cniVersion": "0.4.0"})
    assert rc == 0, err
    assert out == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_errors_in_chroot(chroot: Path) -> None:
    env = {
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/proc/1/ns/net",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/opt/cni/bin",
    }
    rc, out, err = _run(chroot, "ADD", b"{oops", **env)
    assert rc == 1 and out["code"] == 6 and "Traceback" not in err
    rc, out, err = _run(chroot, "ADD", bond_config("1.0.0", mode="nope"), **env)
    assert rc == 1 and out["code"] == 7 and "'mode'" in out["msg"]
    # No /proc in the chroot: the plugin loads from the bundle, then cannot open the netns.
    rc, out, err = _run(chroot, "ADD", bond_config("1.0.0"), **env)
    assert rc == 1 and out["code"] == 100 and "netns" in out["msg"] and "Traceback" not in err
    # DEL of a netns that is gone succeeds.
    rc, out, err = _run(
        chroot, "DEL", bond_config("1.0.0"), **{**env, "CNI_NETNS": "/run/netns/gone"}
    )
    assert (rc, out) == (0, None), err
