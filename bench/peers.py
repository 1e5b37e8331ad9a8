"""The real peers, built from ../shared/peers/<project>-<commit>.tar.gz, and the load generator.

The Go module proxy refuses the peers' own modules, so their sources are kept as tarballs (the
commit in the file name); their dependencies do come from the proxy. Each binary is built once
into $BOND_INJECTOR_CACHE/peers/<tarball stem>-<go version>/ and reused while the tarball's name
and the Go version stay the same. Nothing of theirs is copied into this repository.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INJECTOR = ("network-resources-injector", "./cmd/webhook", "webhook")
BOND_CNI = ("bond-cni", "./bond", "bond")
HEY = "github.com/rakyll/hey@v0.1.5"  # a load generator with latency percentiles, from the proxy


def cache_dir() -> Path:
    return Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache"))


def peers_dir() -> Path:
    return Path(os.environ.get("BOND_INJECTOR_PEERS", REPO.parent / "shared" / "peers"))


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go not found on PATH; the benchmark builds the peers with it")
    return go


def _go_env() -> dict[str, str]:
    """Pinned builds: each peer from its tarball's own go.mod and go.sum (`-mod=readonly`, so a
    build never resolves or rewrites them), hey from its release's; every module hash-checked."""
    unchecked = {"GONOSUMDB", "GONOSUMCHECK", "GOINSECURE", "GOPRIVATE", "GONOPROXY"}
    env = {k: v for k, v in os.environ.items() if k not in unchecked}
    return {**env, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}


def _go_version(go: str) -> str:
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder at a time (two engineers running `make bench` share the cache)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def tarball(project: str) -> Path:
    found = sorted(peers_dir().glob(f"{project}-*.tar.gz"))
    if not found:
        raise RuntimeError(
            f"no {project}-<commit>.tar.gz in {peers_dir()}; set BOND_INJECTOR_PEERS to the"
            " folder holding the peers' source tarballs"
        )
    return found[-1]


def peer_binary(peer: tuple[str, str, str]) -> Path:
    """The peer's binary (built on first use): `peer` is (project, package, binary name)."""
    project, package, name = peer
    source = tarball(project)
    go = _go()
    stem = source.name.removesuffix(".tar.gz")
    target = cache_dir() / "peers" / f"{stem}-{_go_version(go)}" / name
    if target.exists():
        return target
    with _locked(target.parent):
        if target.exists():
            return target
        print(f"  building {project} ({package}) from {source.name} ...", flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            subprocess.run(["tar", "-xzf", str(source), "-C", tmp], check=True)
            partial = target.with_name(f".{name}.tmp")
            subprocess.run(
                ["nice", go, "build", "-mod=readonly", "-trimpath", "-o", str(partial), package],
                cwd=Path(tmp) / project,
                env=_go_env(),
                check=True,
            )
            partial.rename(target)  # atomic: a concurrent reader sees a whole binary or none
    return target


def hey() -> Path:
    """rakyll/hey, installed through the Go module proxy into the cache."""
    go = _go()
    version = HEY.rsplit("@", 1)[1]
    target = cache_dir() / "bench" / f"hey-{version}-{_go_version(go)}" / "hey"
    if target.exists():
        return target
    with _locked(target.parent):
        if not target.exists():
            print(f"  installing {HEY} ...", flush=True)
            env = {**_go_env(), "GOBIN": str(target.parent)}
            subprocess.run(["nice", go, "install", HEY], env=env, check=True)
    return target
