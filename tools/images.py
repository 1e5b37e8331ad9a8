#!/usr/bin/env python3
"""Build the project's OCI images with buildah (no Docker daemon), from bases made here.

    python3 tools/images.py [--cache DIR] [--tag TAG] [--registry REGISTRY [--push]]

The images, each tagged TAG (default: the chart's appVersion):

    localhost/bond-injector/webhook    Dockerfile.webhook: `bond-injector serve` and `certs`
    localhost/bond-injector/cni        Dockerfile.cni: the plugin bundle and its installer
    localhost/bond-injector/pause      images/pause/pause.c, static: containerd's sandbox image
    localhost/bond-injector/bond-test  images/bond-test/Dockerfile: `ip` and `ping` for test pods

No registry is reachable here, so the Dockerfiles' base images are built from Debian packages
with mmdebstrap (bookworm, minbase) and passed in through their build arguments: PYTHON_IMAGE
(python3 3.11 with venv, like python:3.11-slim-bookworm) and DEBIAN_IMAGE (like
debian:bookworm-slim). Elsewhere the same Dockerfiles build against the public bases.

Each image is cached under CACHE/images, keyed by its inputs: the Dockerfile, every file its COPY
lines name (the tracked and untracked-but-not-ignored files: the build context holds exactly
those), its bases' recipes (suite, mirrors, packages) and the tag. A run whose keys all match only
rewrites the manifest. The Python packages are pinned by the key's own inputs (requirements/, made
from uv.lock, installed with pip --require-hashes); what the key cannot see: the versions the
Debian mirror serves at build time.

Outputs, at stable paths:
    CACHE/images/<name>.oci.tar        an OCI archive (`ctr -n k8s.io images import` takes it)
    CACHE/images/images.json           {name: {reference, archive, digest, key, archive_bytes}}
    CACHE/images/chart-values.yaml     the chart values that select these images
buildah's own storage (vfs, isolation chroot: no daemon, no overlay) is CACHE/images/storage.

With --registry, each image is also tagged REGISTRY/<name>:TAG; with --push it is pushed there
(log in first with `buildah login`), its pushed digest recorded, and chart-values.yaml then points
at the registry.
"""

from __future__ import annotations

import argparse
import configparser
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Bump when the way an image is built changes in this script (not in its inputs), so caches
# built the old way are rebuilt.
RECIPE = "3"
LOCAL = "localhost/bond-injector"

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What debian:*-slim leaves out of every package: documentation but its licences, man pages,
# translations. Written to the image's dpkg configuration, so later `apt-get install`s obey it.
SLIM = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/locale/*",
    "force-unsafe-io",  # no fsync per file: the rootfs is thrown away if the build fails
)
# As in the public debian images: an `apt-get install` in a Dockerfile leaves no downloaded
# packages or binary caches in its layer (the RUN line still removes the lists itself).
_RM_CACHES = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb"
    " /var/cache/apt/*.bin || true"
)
APT_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_RM_CACHES}"; }};
APT::Update::Post-Invoke {{ "{_RM_CACHES}"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""


@dataclass(frozen=True)
class Base:
    name: str
    packages: tuple[str, ...]  # beyond minbase
    cmd: str  # the image's default command, as the public base's

    def key(self) -> str:
        parts = ["base", RECIPE, SUITE, *MIRRORS, *SLIM, APT_CLEAN, *self.packages, self.cmd]
        return _digest(parts)

    def ref(self) -> str:
        return f"{LOCAL}-base/{self.name}:{SUITE}-{self.key()[:12]}"


BASES = {
    # libpython3.11: PyInstaller bundles the shared libpython (the public image has it too).
    "python": Base("python", ("python3", "python3-venv", "libpython3.11"), "python3"),
    "debian": Base("debian", (), "bash"),
}


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str | None  # relative to REPO; None: built by _build_pause
    bases: tuple[tuple[str, str], ...] = ()  # (build argument, base name)


IMAGES = (
    Image("webhook", "Dockerfile.webhook", (("PYTHON_IMAGE", "python"),)),
    Image("cni", "Dockerfile.cni", (("PYTHON_IMAGE", "python"), ("DEBIAN_IMAGE", "debian"))),
    Image("pause", None),
    Image("bond-test", "images/bond-test/Dockerfile", (("DEBIAN_IMAGE", "debian"),)),
)
PAUSE_SOURCE = "images/pause/pause.c"
PAUSE_CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror")


class BuildError(Exception):
    pass


def _digest(parts: Sequence[str | bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _run(args: Sequence[str | Path], **kwargs: object) -> str:
    words = [str(a) for a in args]
    proc = subprocess.run(words, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise BuildError(
            f"`{shlex.join(words)}` failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    out: str = proc.stdout
    return out


def _stream(args: Sequence[str | Path], log: Path) -> None:
    """Run a long step with its output in LOG (shown on failure)."""
    words = [str(a) for a in args]
    with log.open("a") as f:
        f.write(f"\n$ {shlex.join(words)}\n")
        f.flush()
        proc = subprocess.run(words, stdout=f, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise BuildError(
            f"`{shlex.join(words)}` failed (exit {proc.returncode}); the end of {log}:\n{tail}"
        )


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths that the COPY and ADD lines of DOCKERFILE name (not --from)."""
    sources: list[str] = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) != 2 or words[0].upper() not in {"COPY", "ADD"}:
            continue
        if words[1].lstrip().startswith("["):
            raise BuildError(f"{dockerfile}: write `{line.strip()}` in shell form (no JSON)")
        args = shlex.split(words[1])
        if any(a.startswith("--from") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        sources += paths[:-1]
    return sources


def context_files(sources: Sequence[str]) -> list[str]:
    """The files under SOURCES that a clean checkout plus the user's new files would hold:
    tracked and untracked-but-not-ignored files that exist (no .venv, caches or bin/)."""
    if not sources:
        return []  # `git ls-files` with no path would list the whole repository
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *sources],
        cwd=REPO,
    )
    files = sorted({p for p in listed.split("\0") if p and os.path.lexists(REPO / p)})
    for source in sources:
        if not any(
            f == source.rstrip("/") or f.startswith(source.rstrip("/") + "/") for f in files
        ):
            raise BuildError(f"COPY source {source} has no files in {REPO}")
    return files


def _file_parts(root: Path, rel: str) -> list[str | bytes]:
    path = root / rel
    if path.is_symlink():
        return [rel, "link", os.readlink(path)]
    mode = "x" if os.access(path, os.X_OK) else "-"
    return [rel, mode, path.read_bytes()]


def _gcc_version() -> str:
    return _run(["gcc", "--version"]).splitlines()[0]


def inputs(image: Image) -> list[str]:
    """The files an image is built from: its Dockerfile and what its COPY lines name."""
    if image.dockerfile is None:
        return [PAUSE_SOURCE]
    return sorted({image.dockerfile, *context_files(copy_sources(REPO / image.dockerfile))})


def image_key(image: Image, tag: str, root: Path = REPO, files: Sequence[str] = ()) -> str:
    """The digest of everything IMAGE is built from: FILES (default: its inputs) read under
    ROOT, its bases' recipes, the tag, and for pause the compiler."""
    parts: list[str | bytes] = ["image", RECIPE, image.name, tag]
    for arg, base in image.bases:
        parts += [arg, BASES[base].key()]
    if image.dockerfile is None:
        parts += [*PAUSE_CFLAGS, _gcc_version()]
    for rel in files or inputs(image):
        parts += _file_parts(root, rel)
    return _digest(parts)


def host_pip_mounts() -> list[str]:
    """`--volume` flags that show the build host's pip configuration, and the CA bundle it names,
    to the RUN steps (bind mounts: never committed into an image). A host behind a TLS-inspecting
    proxy, or with its own package index, then builds the images as it installs packages itself.
    """
    conf = Path("/etc/pip.conf")
    if not conf.is_file():
        return []
    mounts = ["--volume", f"{conf}:{conf}:ro"]
    parser = configparser.ConfigParser()
    parser.read(conf)
    for section in parser.sections():
        cert = parser[section].get("cert")
        if cert and Path(cert).is_file():
            mounts += ["--volume", f"{cert}:{cert}:ro"]
    return mounts


def chart_app_version() -> str:
    chart = (REPO / "charts" / "bond-injector" / "Chart.yaml").read_text()
    found = re.search(r"^appVersion:\s*\"?([^\"\s]+)\"?\s*$", chart, re.MULTILINE)
    if found is None:
        raise BuildError("charts/bond-injector/Chart.yaml has no appVersion: set one, or --tag")
    return found.group(1)


class Builder:
    def __init__(self, cache: Path, tag: str) -> None:
        self.dir = cache / "images"
        self.tag = tag
        self.log = self.dir / "build.log"
        self.storage = [
            "--root",
            str(self.dir / "storage"),
            "--runroot",
            str(self.dir / "run"),
            "--storage-driver",
            "vfs",
        ]

    def buildah(self, *args: str | Path) -> str:
        return _run(["buildah", *self.storage, *args])

    def has_image(self, ref: str) -> bool:
        proc = subprocess.run(
            ["buildah", *self.storage, "inspect", "--type", "image", ref],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def ref(self, image: Image) -> str:
        return f"{LOCAL}/{image.name}:{self.tag}"

    def archive(self, image: Image) -> Path:
        return self.dir / f"{image.name}.oci.tar"

    def _key_file(self, image: Image) -> Path:
        return self.dir / f"{image.name}.key"

    def cached(self, image: Image, key: str) -> bool:
        key_file = self._key_file(image)
        return (
            self.archive(image).is_file()
            and key_file.is_file()
            and key_file.read_text().strip() == key
        )

    def ensure_base(self, base: Base) -> str:
        ref = base.ref()
        if self.has_image(ref):
            return ref
        started = time.monotonic()
        print(f"images: building base {ref} with mmdebstrap", flush=True)
        debs = self.dir / "debs"  # downloaded packages, shared by the bases and later runs
        debs.mkdir(parents=True, exist_ok=True)
        with self._scratch(ref) as container:
            rootfs = self.buildah("mount", container).strip()
            _stream(
                [
                    "mmdebstrap",
                    "--mode=root",
                    "--variant=minbase",
                    *([f"--include={','.join(base.packages)}"] if base.packages else []),
                    # merged /usr as bookworm has it, by mmdebstrap's own hook: without it apt
                    # picks usrmerge, which pulls in perl.
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                    *(f"--dpkgopt={opt}" for opt in SLIM),
                    '--aptopt=Acquire::Languages "none"',
                    # Keep the downloaded .debs for the next base, as mmdebstrap's manual shows.
                    "--skip=essential/unlink",
                    '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
                    f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
                    f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
                    "--customize-hook=cat > \"$1\"/etc/apt/apt.conf.d/docker-clean <<'EOF'\n"
                    + APT_CLEAN
                    + "EOF",
                    # apt's binary caches (~70 MB) are rebuilt from the lists, which are gone.
                    '--customize-hook=rm -f "$1"/var/cache/apt/*.bin',
                    SUITE,
                    rootfs,
                    *MIRRORS,
                ],
                self.log,
            )
            self.buildah("umount", container)
            self.buildah(
                "config",
                "--env",
                "LANG=C.UTF-8",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                json.dumps([base.cmd]),
                "--label",
                f"io.bond-injector.base-key={base.key()}",
                "--label",
                f"org.opencontainers.image.description=Debian {SUITE} minbase, {base.name}",
                container,
            )
        print(f"images: base {ref} in {time.monotonic() - started:.0f} s", flush=True)
        return ref

    def build(self, image: Image) -> str:
        """Build IMAGE and export its archive; its key, computed from the very files built."""
        ref = self.ref(image)
        build_args: list[str] = []
        for arg, base in image.bases:
            build_args += ["--build-arg", f"{arg}={self.ensure_base(BASES[base])}"]
        with tempfile.TemporaryDirectory(prefix=f"{image.name}-context.", dir=self.dir) as tmp:
            # The build context: a snapshot of the inputs, so an edit during the build cannot
            # make the recorded key lie about what was built.
            context = Path(tmp)
            files = inputs(image)
            for rel in files:
                target = context / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, target, follow_symlinks=False)
            key = image_key(image, self.tag, context, files)
            if image.dockerfile is None:
                self._build_pause(ref, key, context / PAUSE_SOURCE)
            else:
                _stream(
                    [
                        "buildah",
                        *self.storage,
                        "bud",
                        "--isolation",
                        "chroot",
                        "--layers=false",
                        "--label",
                        f"io.bond-injector.key={key}",
                        *build_args,
                        *host_pip_mounts(),
                        "--file",
                        context / image.dockerfile,
                        "--tag",
                        ref,
                        context,
                    ],
                    self.log,
                )
        archive = self.archive(image)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        self.buildah("push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
        partial.replace(archive)
        self._key_file(image).write_text(key + "\n")
        return key

    def _build_pause(self, ref: str, key: str, source: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="pause.", dir=self.dir) as tmp:
            binary = Path(tmp) / "pause"
            _run(["gcc", *PAUSE_CFLAGS, "-o", binary, source])
            with self._scratch(ref) as container:
                self.buildah("copy", "--chmod", "0755", container, binary, "/pause")
                self.buildah(
                    "config",
                    "--entrypoint",
                    '["/pause"]',
                    "--cmd",
                    "",
                    "--user",
                    "65535:65535",
                    "--label",
                    f"io.bond-injector.key={key}",
                    container,
                )

    @contextmanager
    def _scratch(self, ref: str) -> Iterator[str]:
        """A working container from scratch for the block to fill: committed as `ref` when the
        block succeeds, removed when it fails (or is interrupted)."""
        container = self.buildah("from", "scratch").strip()
        try:
            yield container
            self.buildah("commit", "--quiet", "--rm", container, ref)
        except BaseException:
            subprocess.run(
                ["buildah", *self.storage, "rm", container], capture_output=True, check=False
            )
            raise

    def ensure_stored(self, image: Image) -> str:
        """The image in buildah's storage (pulled back from its archive if storage was wiped)."""
        ref = self.ref(image)
        if not self.has_image(ref):
            self.buildah("pull", "--quiet", f"oci-archive:{self.archive(image)}:{ref}")
        return ref

    def prune(self, keep: set[str]) -> None:
        """Drop base images of older recipes and images no tag names any more."""
        listed = self.buildah("images", "--json")
        for entry in json.loads(listed or "[]"):
            names = entry.get("names") or []
            if names and all(n.startswith(f"{LOCAL}-base/") and n not in keep for n in names):
                self.buildah("rmi", entry["id"])
        subprocess.run(
            ["buildah", *self.storage, "rmi", "--prune"], capture_output=True, check=False
        )


def archive_digest(archive: Path) -> str:
    """The manifest digest of the one image in an OCI archive (what a runtime reports)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise BuildError(f"{archive} has no index.json")
        index = json.load(member)
    digest: str = index["manifests"][0]["digest"]
    return digest


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time per cache (the node rig and the tests may both ask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _check_tools() -> None:
    missing = [t for t in ("buildah", "mmdebstrap", "gcc", "git") if shutil.which(t) is None]
    if missing:
        raise BuildError(
            f"{', '.join(missing)} not found: run `make images` (it installs them), or "
            f"apt-get install {' '.join(missing)}"
        )
    if os.geteuid() != 0:
        raise BuildError("building the images needs root (mmdebstrap --mode=root, buildah vfs)")


def _chart_values(entries: dict[str, dict[str, object]]) -> str:
    keys = {"webhook": "webhook", "cni": "cniInstaller"}
    lines = ["# The chart values that select the images tools/images.py built or pushed."]
    for name, entry in entries.items():
        if name not in keys:
            continue
        pushed = entry.get("pushed")
        ref = str(pushed["reference"] if isinstance(pushed, dict) else entry["reference"])
        repository, _, tag = ref.rpartition(":")
        lines += [
            f"{keys[name]}:",
            "  image:",
            f"    repository: {repository}",
            f'    tag: "{tag}"',
        ]
        if isinstance(pushed, dict):
            lines.append(f'    digest: "{pushed["digest"]}"')
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=REPO / ".cache")
    parser.add_argument("--tag", default="", help="image tag (default: the chart's appVersion)")
    parser.add_argument("--registry", default="", help="also tag as REGISTRY/<name>:TAG")
    parser.add_argument("--push", action="store_true", help="push the REGISTRY tags")
    parser.add_argument(
        "--tls-verify",
        default="true",
        choices=("true", "false"),
        help="verify the registry's TLS certificate (false: a plain-HTTP or self-signed one)",
    )
    args = parser.parse_args(argv)
    if args.push and not args.registry:
        parser.error("--push needs --registry (make images REGISTRY=... PUSH=1)")
    try:
        _check_tools()
        builder = Builder(args.cache.resolve(), args.tag or chart_app_version())
        with _locked(builder.dir / ".lock"):
            return _main(builder, args.registry.rstrip("/"), args.push, args.tls_verify)
    except BuildError as e:
        print(f"images: {e}", file=sys.stderr)
        return 1


def _main(builder: Builder, registry: str, push: bool, tls_verify: str) -> int:
    started = time.monotonic()
    entries: dict[str, dict[str, object]] = {}
    for image in IMAGES:
        key = image_key(image, builder.tag)
        if builder.cached(image, key):
            print(f"images: {builder.ref(image)} is up to date", flush=True)
        else:
            t0 = time.monotonic()
            print(f"images: building {builder.ref(image)}", flush=True)
            key = builder.build(image)
            print(
                f"images: built {builder.ref(image)} in {time.monotonic() - t0:.0f} s", flush=True
            )
        archive = builder.archive(image)
        entry: dict[str, object] = {
            "reference": builder.ref(image),
            "archive": str(archive),
            "digest": archive_digest(archive),
            "key": key,
            "archive_bytes": archive.stat().st_size,
        }
        if registry:
            remote = f"{registry}/{image.name}:{builder.tag}"
            local = builder.ensure_stored(image)
            builder.buildah("tag", local, remote)
            if push:
                with tempfile.NamedTemporaryFile(dir=builder.dir) as digest_file:
                    builder.buildah(
                        "push",
                        "--quiet",
                        f"--tls-verify={tls_verify}",
                        "--digestfile",
                        digest_file.name,
                        remote,
                        f"docker://{remote}",
                    )
                    digest = Path(digest_file.name).read_text().strip()
                entry["pushed"] = {"reference": remote, "digest": digest}
                print(f"images: pushed {remote}@{digest}", flush=True)
        entries[image.name] = entry
    # Every run: images no name points at any more (a rebuild's predecessor, or a copy pulled
    # back from an archive by the tests) would otherwise pile up in the vfs storage.
    builder.prune({b.ref() for b in BASES.values()})
    manifest = builder.dir / "images.json"
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    tmp.replace(manifest)
    values = builder.dir / "chart-values.yaml"
    values.write_text(_chart_values(entries))
    print(f"images: {manifest} and {values} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
