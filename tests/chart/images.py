"""The images `make images` builds (tools/images.py), opened for the tests with buildah.

    built = build_images()          # runs tools/images.py: builds what changed, else a no-op
    with container(built, "cni") as box:
        box.run(["/usr/local/bin/install-bond-cni"], volumes={host_dir: "/host/opt/cni/bin"})

A container here is the image's own root filesystem, made from the OCI archive the node rig
imports into containerd (`buildah from oci-archive:...`), and run with `buildah run --isolation
chroot`: the image's files, user and environment, with no runtime or daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import images

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "images.py"


def cache_dir() -> Path:
    return Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache"))


@dataclass(frozen=True)
class Built:
    tag: str
    storage: tuple[str, ...]  # buildah's global flags for the build's own storage
    images: Mapping[str, Mapping[str, Any]]  # name -> images.json entry
    output: str  # what the build printed

    def buildah(self, *args: str | Path, timeout: float = 300) -> str:
        words = ["buildah", *self.storage, *(str(a) for a in args)]
        proc = subprocess.run(words, capture_output=True, text=True, check=False, timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(words)}: {proc.stderr}"
        return proc.stdout

    def config(self, name: str) -> dict[str, Any]:
        """The OCI image configuration's `config` part (Entrypoint, Cmd, User, Env)."""
        ref = self.images[name]["reference"]
        inspected = json.loads(self.buildah("inspect", "--type", "image", ref))
        config: dict[str, Any] = inspected["OCIv1"]["config"]
        return config


def build_images(*extra: str) -> Built:
    """Run the image build as `make images` does; fails with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--cache", cache_dir(), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = json.loads((cache_dir() / "images" / "images.json").read_text())
    tag = images.chart_app_version()
    return Built(
        tag=tag,
        storage=tuple(images.Builder(cache_dir(), tag).storage),
        images=entries,
        output=proc.stdout,
    )


@dataclass(frozen=True)
class Container:
    built: Built
    id: str
    rootfs: Path  # the container's files, mounted on the host

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        volumes: Mapping[Path, str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        caps: Sequence[str] = (),
        stdin: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """ARGV run inside the container as its image configures it (user, environment),
        with each host path in VOLUMES bind-mounted at its container path and CAPS added to
        buildah's default capabilities."""
        flags: list[str] = ["--isolation", "chroot"]
        for host, inside in (volumes or {}).items():
            flags += ["--volume", f"{host}:{inside}"]
        for key, value in (env or {}).items():
            flags += ["--env", f"{key}={value}"]
        if user is not None:
            flags += ["--user", user]
        for cap in caps:
            flags += ["--cap-add", cap]
        return subprocess.run(
            ["buildah", *self.built.storage, "run", *flags, self.id, "--", *map(str, argv)],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


@contextmanager
def container(built: Built, name: str) -> Iterator[Container]:
    """A working container of image NAME, from its OCI archive; removed afterwards."""
    entry = built.images[name]
    ident = built.buildah("from", "--quiet", f"oci-archive:{entry['archive']}").strip()
    try:
        rootfs = Path(built.buildah("mount", ident).strip())
        yield Container(built, ident, rootfs)
    finally:
        built.buildah("rm", ident)
