"""Old-glibc and no-libc roots to run the bundle (bin/bond.d) in, as a node with that libc would.

bullseye_rootfs()   Debian bullseye (glibc 2.31), minbase plus containernetworking-plugins
                    (its host-local, linked against that glibc), made once with mmdebstrap
                    and cached under $BOND_INJECTOR_CACHE/rootfs/, keyed by what made it.
                    Bullseye is the oldest suite the Debian mirror here serves; RHEL 8's
                    2.28 is older still, which the ELF scan in test_glibc_floor.py covers.
run_in(...)         one command in such a root, through `unshare --mount`: an overlay keeps
                    the cached root read-only, /proc and the pod's netns are mounted for the
                    command alone, and every mount dies with it (nothing to clean up).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bin" / "bond.d"
SUITE = "bullseye"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("containernetworking-plugins",)
NETNS_IN_ROOT = "/run/netns/pod"


def _cache() -> Path:
    return Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache"))


def require_root_tools() -> None:
    """Fail, never skip: `make test` runs as root with these installed (tools/ensure-apt.sh)."""
    if os.geteuid() != 0:
        pytest.fail("the bundle's chroot tests need root (chroot, mounts, netns)", pytrace=False)
    for tool in ("unshare", "chroot", "mount", "ip"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            pytest.fail(f"{tool} is missing: run tools/ensure-apt.sh", pytrace=False)
    if not (BUNDLE / "bond").exists():
        pytest.fail(f"{BUNDLE} is missing: run `make build` (./build.sh)", pytrace=False)


def bullseye_rootfs() -> Path:
    """The cached bullseye root, made on first use (about two minutes; needs the Debian mirror)."""
    key = hashlib.sha256(f"{SUITE} minbase {MIRROR} {' '.join(PACKAGES)}".encode()).hexdigest()
    root = _cache() / "rootfs" / f"{SUITE}-minbase-{key[:12]}"
    if (root / "etc" / "debian_version").is_file():
        return root
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        pytest.fail("mmdebstrap is missing: run tools/ensure-apt.sh", pytrace=False)
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs wait for one build
        if (root / "etc" / "debian_version").is_file():
            return root
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        done = subprocess.run(
            [mmdebstrap, "--mode=root", "--variant=minbase", "--quiet",
             f"--include={','.join(PACKAGES)}", SUITE, str(partial), MIRROR],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            pytest.fail(f"mmdebstrap {SUITE} failed:\n{done.stderr[-3000:]}", pytrace=False)
        partial.rename(root)
    return root


@dataclass(frozen=True)
class Root:
    """A root to chroot into: `lower` alone (bare), or an overlay of `lower` and `upper`."""

    lower: Path
    upper: Path | None = None

    @property
    def writable(self) -> Path:
        """Where files put into the root go (the overlay's upper layer, or the bare root)."""
        return self.upper / "fs" if self.upper else self.lower

    def install_bundle(self) -> None:
        """The bundle as the installer lays it out: bond.d beside a `bond` symlink."""
        cni_bin = self.writable / "opt" / "cni" / "bin"
        cni_bin.mkdir(parents=True, exist_ok=True)
        shutil.copytree(BUNDLE, cni_bin / "bond.d", symlinks=True)
        (cni_bin / "bond").symlink_to("bond.d/bond")


def overlay(lower: Path, scratch: Path) -> Root:
    (scratch / "fs").mkdir(parents=True)
    (scratch / "work").mkdir()
    (scratch / "merged").mkdir()
    return Root(lower, scratch)


def run_in(
    root: Root,
    argv: list[str],
    env: dict[str, str],
    stdin: bytes = b"",
    *,
    netns: str | None = None,
    proc: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv chrooted in `root` with exactly `env`; `netns` (a name under /run/netns) is
    bind-mounted at NETNS_IN_ROOT."""
    target = str(root.upper / "merged") if root.upper else str(root.lower)
    script = ["set -e"]
    if root.upper:
        options = (
            f"lowerdir={root.lower},upperdir={root.upper / 'fs'},workdir={root.upper / 'work'}"
        )
        script.append(f"mount -t overlay overlay -o {options} {target}")
    if proc:
        script.append(f"mkdir -p {target}/proc && mount -t proc proc {target}/proc")
    if netns:
        script += [
            f"mkdir -p {target}/run/netns && touch {target}{NETNS_IN_ROOT}",
            f"mount --bind /run/netns/{netns} {target}{NETNS_IN_ROOT}",
        ]
    # The setup shell runs on the host's PATH; the command, chrooted, gets `env` and nothing else.
    script.append('exec env -i "$@"')
    host_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    chroot = shutil.which("chroot", path=host_path) or "/usr/sbin/chroot"
    command = ["unshare", "--mount", "--propagation", "private"]
    command += ["env", "-i", f"PATH={host_path}", "sh", "-c", "; ".join(script), "sh"]
    command += [*(f"{k}={v}" for k, v in env.items()), chroot, target, *argv]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=180, check=False)
