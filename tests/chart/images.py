"""Replay a Dockerfile's build stage on this host, since no Docker engine runs here.

    python -m tests.chart.images Dockerfile.webhook OUT_DIR

What is replayed: the build stage's WORKDIR, COPY (from the build context = the repository's
tracked files) and RUN lines, with every absolute path argument moved under OUT_DIR/build-root,
then the final stage's `COPY --from=build SRC DEST` into OUT_DIR/rootfs. What is not: the base
images (the host's python3 and Debian packages stand in for them) and RUN lines that install
Debian packages: the host must have each package such a line names (binutils for PyInstaller, gcc
and libc6-dev for the static CNI client), or the replay stops and says which are missing.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    workdir: str = "/"
    steps: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)


@dataclass(frozen=True)
class Built:
    rootfs: Path  # the final image's files, as COPY --from=build put them
    entrypoint: str
    skipped: tuple[str, ...]  # RUN lines not replayed, and why


def parse(dockerfile: Path) -> list[Stage]:
    stages: list[Stage] = []
    logical = dockerfile.read_text().replace("\\\n", " ").splitlines()
    for raw in logical:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name))
        elif stages:
            stages[-1].steps.append((instruction, args.strip()))
    return stages


def apt_packages(run: str) -> list[str]:
    """The packages the `apt-get install` commands of a RUN line's arguments install."""
    packages: list[str] = []
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        if words[:2] == ["apt-get", "install"]:
            packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


def missing_on_host(packages: list[str]) -> list[str]:
    """The packages dpkg does not list as installed on this host."""
    missing = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if status != "install ok installed":
            missing.append(package)
    return missing


def _under(root: Path, container_path: str) -> Path:
    return root / container_path.lstrip("/")


def _context_files(paths: list[str]) -> list[Path]:
    """The tracked files under each COPY source: the build context is a clean checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [REPO / p for p in listed.split("\0") if p]


def build(dockerfile: Path, out: Path) -> Built:
    stages = parse(dockerfile)
    build_stage, final = stages[0], stages[-1]
    root = out / "build-root"
    rootfs = out / "rootfs"
    skipped: list[str] = []
    workdir = "/"
    for instruction, args in build_stage.steps:
        if instruction == "WORKDIR":
            workdir = args
            _under(root, workdir).mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = shlex.split(args)
            target = _under(root, dest if dest.startswith("/") else f"{workdir}/{dest}")
            for source in sources:
                for file in _context_files([source]):
                    rel = file.relative_to(REPO / source) if source.endswith("/") else None
                    if rel is not None:
                        where = target / rel
                    elif dest.endswith("/"):
                        where = target / file.name
                    else:
                        where = target
                    where.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, where)
        elif instruction == "RUN":
            if "apt-get" in args:
                packages = apt_packages(args)
                missing = missing_on_host(packages)
                if missing:
                    raise RuntimeError(
                        f"{dockerfile.name} installs {' '.join(missing)} in its build stage, and "
                        f"this host lacks them: apt-get install {' '.join(missing)}, so the "
                        "replay can stand in for that step"
                    )
                skipped.append(f"{args} (the host's {', '.join(packages)} stand in)")
                continue
            words = [str(_under(root, w)) if w.startswith("/") else w for w in shlex.split(args)]
            subprocess.run(words, cwd=_under(root, workdir), check=True)
    entrypoint = ""
    for instruction, args in final.steps:
        if instruction == "COPY" and args.startswith(f"--from={build_stage.name} "):
            source, dest = shlex.split(args)[1:]
            target = _under(rootfs, dest)
            shutil.copytree(_under(root, source), target, symlinks=True, dirs_exist_ok=True)
        elif instruction == "ENTRYPOINT":
            entrypoint = args
    return Built(rootfs, entrypoint, tuple(skipped))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    built = build(REPO / argv[0], Path(argv[1]).resolve())
    print(f"rootfs: {built.rootfs}\nentrypoint: {built.entrypoint}")
    for line in built.skipped:
        print(f"not replayed: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
