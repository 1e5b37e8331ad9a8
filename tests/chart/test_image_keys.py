"""What decides whether `make images` rebuilds an image: its cache key (tools/images.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import images

_CNI = next(i for i in images.IMAGES if i.name == "cni")
_WEBHOOK = next(i for i in images.IMAGES if i.name == "webhook")


def test_an_images_inputs_are_its_dockerfile_and_the_tracked_files_its_copy_lines_name() -> None:
    files = images.inputs(_CNI)
    assert {"Dockerfile.cni", "build.sh", "pyproject.toml", "README.md"} <= set(files)
    assert "images/cni/install-bond-cni.sh" in files
    assert any(f.startswith("cni/") and f.endswith(".py") for f in files)
    assert "tools/plugin-launcher.c" in files
    # Not in the context: ignored files, and what no COPY line names.
    assert not any("__pycache__" in f or f.startswith((".venv/", "tests/", "bin/")) for f in files)
    assert "Dockerfile.webhook" not in files


def test_an_image_that_copies_nothing_is_built_from_its_dockerfile_alone() -> None:
    (test_image,) = (i for i in images.IMAGES if i.name == "bond-test")
    assert images.inputs(test_image) == ["images/bond-test/Dockerfile"]


@pytest.fixture
def snapshot(tmp_path: Path) -> tuple[Path, list[str]]:
    files = images.inputs(_CNI)
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(images.REPO / rel, tmp_path / rel, follow_symlinks=False)
    return tmp_path, files


def test_the_key_follows_every_input_the_bases_and_the_tag(
    snapshot: tuple[Path, list[str]],
) -> None:
    root, files = snapshot
    key = images.image_key(_CNI, "0.1.0", root, files)
    assert key == images.image_key(_CNI, "0.1.0")  # the snapshot holds what the repo holds
    assert images.image_key(_CNI, "0.1.1", root, files) != key
    assert images.image_key(_WEBHOOK, "0.1.0") != key
    plugin = next(f for f in files if f.startswith("cni/") and f.endswith(".py"))
    (root / plugin).write_text((root / plugin).read_text() + "\n# changed\n")
    assert images.image_key(_CNI, "0.1.0", root, files) != key
    (root / plugin).write_text((images.REPO / plugin).read_text())
    (root / "build.sh").chmod(0o644)  # the exec bit is content too: RUN sh ... would differ
    assert images.image_key(_CNI, "0.1.0", root, files) != key


def test_a_base_is_keyed_by_its_suite_mirrors_and_packages() -> None:
    python, debian = images.BASES["python"], images.BASES["debian"]
    assert python.key() != debian.key()
    assert "python3-venv" in python.packages
    bigger = images.Base("debian", ("iproute2",), debian.cmd)
    assert bigger.key() != debian.key()
    assert bigger.ref() != debian.ref()
    assert debian.ref().startswith("localhost/bond-injector-base/debian:bookworm-")


def test_copy_lines_in_json_form_are_refused_with_the_line(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM x\nCOPY ["a", "b/"]\n')
    with pytest.raises(images.BuildError, match=r'COPY \["a", "b/"\].*shell form'):
        images.copy_sources(dockerfile)
