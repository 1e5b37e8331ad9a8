"""Build the benchmark's Go programs once, cached by their sources and the Go version."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
REPO = GO_DIR.parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache"))


def go_binary(name: str) -> Path:
    """bench/go/<name> built into .cache/bench/<name>-<key>/; rebuilt when a source changes."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go not found on PATH; the benchmark builds its Go stand-ins with it")
    source = GO_DIR / name
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for path in sorted(source.iterdir()):
        if path.suffix in {".go", ".mod", ".sum"}:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache_dir() / "bench" / f"{name}-{digest.hexdigest()[:16]}" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.tmp")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
    subprocess.run(
        [go, "build", "-trimpath", "-o", str(partial), "."], cwd=source, env=env, check=True
    )
    partial.rename(target)  # atomic: a concurrent run sees a whole binary or none
    return target
