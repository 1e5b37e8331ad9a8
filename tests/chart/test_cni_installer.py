"""images/cni/install-bond-cni.sh, the CNI installer DaemonSet's command, run on a temp dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.chart.render import REPO

SCRIPT = REPO / "images" / "cni" / "install-bond-cni.sh"


def _bundle(root: Path, version: str) -> Path:
    """A stand-in for the PyInstaller one-dir bundle: an executable `bond` and its libraries."""
    bundle = root / f"bundle-{version}"
    (bundle / "_internal").mkdir(parents=True)
    exe = bundle / "bond"
    exe.write_text(f'#!/bin/sh\necho \'{{"plugin": "bond", "version": "{version}"}}\'\n')
    exe.chmod(0o755)
    (bundle / "_internal" / "lib.so").write_text(version)
    return bundle


def _install(source: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOND_CNI_SOURCE": str(source), "CNI_BIN_DIR": str(dest)}
    env["INSTALL_ONLY"] = "1"
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=60
    )


def _run_plugin(dest: Path) -> str:
    return subprocess.run(
        [str(dest / "bond")], capture_output=True, text=True, check=True, timeout=10
    ).stdout


def test_a_bundle_is_installed_behind_a_symlink_and_upgraded_by_rename(tmp_path: Path) -> None:
    dest = tmp_path / "opt-cni-bin"
    dest.mkdir()
    (dest / "host-local").write_text("another plugin")
    v1, v2, v3 = (_bundle(tmp_path, v) for v in ("1", "2", "3"))

    first = _install(v1, dest)
    assert first.returncode == 0, first.stderr
    assert '"version": "1"' in _run_plugin(dest)
    link = os.readlink(dest / "bond")
    assert not link.startswith("/")  # relative: valid both in the container and on the host
    assert "is already bundle" in _install(v1, dest).stderr
    assert os.readlink(dest / "bond") == link

    assert _install(v2, dest).returncode == 0
    assert '"version": "2"' in _run_plugin(dest)
    assert _install(v3, dest).returncode == 0
    assert '"version": "3"' in _run_plugin(dest)
    bundles = sorted(p.name for p in dest.iterdir() if p.name.startswith(".bond-"))
    assert len(bundles) == 2  # the current one and the one just replaced; older ones are gone
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".bond-")) == [
        "bond",
        "host-local",
    ]  # no temp file is left behind, and other plugins are untouched


def test_a_single_file_plugin_is_copied_to_a_temp_name_then_renamed(tmp_path: Path) -> None:
    dest = tmp_path / "bin"
    dest.mkdir()
    exe = _bundle(tmp_path, "f") / "bond"
    assert _install(exe, dest).returncode == 0
    installed = dest / "bond"
    assert installed.is_file() and not installed.is_symlink()
    assert installed.stat().st_mode & 0o777 == 0o755
    inode = installed.stat().st_ino
    assert "is already" in _install(exe, dest).stderr
    assert installed.stat().st_ino == inode  # unchanged content: not rewritten
    exe.write_text("#!/bin/sh\necho new\n")
    assert _install(exe, dest).returncode == 0
    assert _run_plugin(dest) == "new\n"
    assert installed.stat().st_ino != inode  # a new file renamed into place, not an in-place write
    assert sorted(p.name for p in dest.iterdir()) == ["bond"]


def test_a_missing_host_directory_is_reported(tmp_path: Path) -> None:
    result = _install(_bundle(tmp_path, "1"), tmp_path / "missing")
    assert result.returncode == 1
    assert "is not a directory: mount the host's CNI bin directory there" in result.stderr


def test_a_bundle_folder_is_trusted_by_its_content_not_its_name(tmp_path: Path) -> None:
    """Issue 21: an existing `.bond-<digest>` folder was used because of its name. Whoever can
    write the CNI bin folder could plant one (or change the installed one) for the runtime to
    exec as root. Now its content must have that digest, else it is replaced from the image."""
    dest = tmp_path / "bin"
    dest.mkdir()
    v1 = _bundle(tmp_path, "1")
    assert _install(v1, dest).returncode == 0
    folder = dest / os.readlink(dest / "bond").split("/")[0]
    # Changed in place behind the installed symlink: one file rewritten, one symlink added.
    (folder / "bond").write_text("#!/bin/sh\necho planted\n")
    (folder / "_internal" / "extra.so").symlink_to("/tmp/planted.so")
    assert _run_plugin(dest) == "planted\n"
    again = _install(v1, dest)
    assert again.returncode == 0, again.stderr
    assert f"{folder} does not hold bundle" in again.stderr
    assert '"version": "1"' in _run_plugin(dest)
    assert not (folder / "_internal" / "extra.so").is_symlink()
    # Planted before the first install, under the name the image's bundle will have.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    planted = fresh / folder.name
    planted.mkdir()
    (planted / "bond").write_text("#!/bin/sh\necho planted\n")
    (planted / "bond").chmod(0o755)
    assert _install(v1, fresh).returncode == 0
    assert '"version": "1"' in _run_plugin(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == sorted(["bond", folder.name])  # no leftover
