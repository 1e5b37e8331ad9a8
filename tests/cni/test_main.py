"""The dispatcher as a runtime sees it: env + stdin in, one JSON document (or nothing) out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conftest import ALL_VERSIONS, bond_config

ENV = {
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/none",
    "CNI_IFNAME": "bond0",
    "CNI_PATH": "/usr/lib/cni",
}


def plugin(command: str, stdin: bytes, **env: str) -> tuple[int, Any, str]:
    full = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": command, **env}
    proc = subprocess.run(
        [sys.executable, "-m", "cni"],
        input=stdin,
        env=full,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr.decode()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_version(version: str) -> None:
    rc, out, _ = plugin("VERSION", json.dumps({"cniVersion": version}).encode())
    assert rc == 0
    assert out == {"cniVersion": version, "supportedVersions": list(ALL_VERSIONS)}


def _error(rc: int, out: Any, err: str, code: int, version: str = "1.1.0") -> dict[str, Any]:
    assert rc != 0
    assert set(out) == {"cniVersion", "code", "msg", "details"}
    assert out["code"] == code and out["cniVersion"] == version
    assert "Traceback" not in err and err.startswith("bond-cni ERROR")
    return dict(out)


@pytest.mark.parametrize(
    ("command", "env", "stdin", "code", "fragment"),
    [
        ("ADD", {k: v for k, v in ENV.items() if k != "CNI_NETNS"}, bond_config(), 4, "CNI_NETNS"),
        ("DEL", {**ENV, "CNI_IFNAME": "bad/name"}, bond_config(), 4, "CNI_IFNAME"),
        ("ADD", {**ENV, "CNI_CONTAINERID": "-x y"}, bond_config(), 4, "CNI_CONTAINERID"),
        ("FROB", ENV, bond_config(), 4, "CNI_COMMAND"),
        ("ADD", ENV, b"{not json", 6, "decode"),
        ("ADD", ENV, bond_config("0.2.0"), 1, "incompatible"),
        ("CHECK", ENV, bond_config("0.3.1"), 1, "CHECK"),
        ("GC", ENV, bond_config("1.0.0"), 1, "GC"),
        ("STATUS", ENV, bond_config("0.4.0"), 1, "STATUS"),
        ("ADD", ENV, bond_config(mode="fast"), 7, "'mode'"),
        ("ADD", ENV, bond_config(ipam={"type": "no-such-ipam"}), 7, "no-such-ipam"),
    ],
)
def test_errors(command: str, env: dict[str, str], stdin: Any, code: int, fragment: str) -> None:
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    rc, out, err = plugin(command, raw, **env)
    version = stdin.get("cniVersion", "1.1.0") if isinstance(stdin, dict) else "1.1.0"
    if version not in ALL_VERSIONS:
        version = "1.1.0"
    error = _error(rc, out, err, code, version)
    assert fragment in error["msg"] + error["details"]


def test_del_of_gone_netns_succeeds_silently() -> None:
    rc, out, err = plugin("DEL", json.dumps(bond_config("1.0.0")).encode(), **ENV)
    assert (rc, out) == (0, None), err


def test_a_netns_path_that_is_no_namespace_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "netns"
    fake.write_text("")
    rc, out, err = plugin(
        "ADD", json.dumps(bond_config()).encode(), **{**ENV, "CNI_NETNS": str(fake)}
    )
    error = _error(rc, out, err, 100)
    assert error["msg"] == f"cannot open netns {fake}"


def _fake_ipam(directory: Path, name: str, stdout: str) -> Path:
    """Fault injection: an IPAM "plugin" that answers every command with `stdout` and exit 0. A
    real executable in a CNI_PATH of its own; no real IPAM misbehaves on demand."""
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '%s' '{stdout}'\n")
    script.chmod(0o755)
    return directory


@pytest.mark.parametrize(
    ("stdout", "problem"),
    # Why text is not JSON is the json module's own wording: only our part of the message is ours.
    [("this is not JSON", ""), ("[1, 2]", "a JSON list, not an object")],
)
def test_ipam_printing_no_result_is_a_clear_error_6(
    tmp_path: Path, stdout: str, problem: str
) -> None:
    path = _fake_ipam(tmp_path / "cni-bin", "garbage", stdout)
    conf = bond_config("1.1.0", ipam={"type": "garbage"})
    rc, out, err = plugin("STATUS", json.dumps(conf).encode(), CNI_PATH=str(path))
    error = _error(rc, out, err, 6)
    assert error["msg"].startswith("IPAM garbage VERSION printed no CNI result: " + problem)
    assert stdout[:10] in error["details"]


def test_internal_error_branch_answers_json_not_a_traceback(tmp_path: Path) -> None:
    """A fault no check anticipates: the process runs out of file descriptors (a real limit the
    kernel enforces, set with prlimit) while it starts the IPAM plugin."""
    conf = bond_config("1.1.0", ipam={"type": "host-local", "subnet": "192.0.2.0/24"})
    full = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "STATUS", **ENV}
    proc = subprocess.run(
        ["prlimit", "--nofile=8", sys.executable, "-m", "cni"],
        input=json.dumps(conf).encode(),
        env=full,
        capture_output=True,
        timeout=60,
        check=False,
    )
    error = _error(proc.returncode, json.loads(proc.stdout), proc.stderr.decode(), 100)
    assert error == {
        "cniVersion": "1.1.0",
        "code": 100,
        "msg": "internal error: OSError",
        "details": "[Errno 24] Too many open files",
    }
    assert "internal error OSError" in proc.stderr.decode()


def test_log_file_gets_info_lines_stderr_only_warnings(node_log_file: Path) -> None:
    conf = bond_config("1.0.0", logFile=str(node_log_file))
    rc, out, err = plugin("DEL", json.dumps(conf).encode(), **ENV)
    assert (rc, out) == (0, None)
    assert "DEL c1: no netns '/run/netns/none'" in node_log_file.read_text()
    assert err == ""  # info goes to the file only; stdout and stderr stay clean
