"""The dispatcher as a runtime sees it: env + stdin in, one JSON document (or nothing) out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_internal_error_is_json_not_traceback(tmp_path: Any) -> None:
    # A netns path that exists but is no namespace: opening it fails deep inside pyroute2.
    fake = tmp_path / "netns"
    fake.write_text("")
    rc, out, err = plugin(
        "ADD", json.dumps(bond_config()).encode(), **{**ENV, "CNI_NETNS": str(fake)}
    )
    assert rc != 0 and out["code"] >= 100
    assert "Traceback" not in err


def test_log_file_gets_info_lines_stderr_only_warnings(tmp_path: Any) -> None:
    log_file = tmp_path / "bond.log"
    conf = bond_config("1.0.0", logFile=str(log_file))
    rc, out, err = plugin("DEL", json.dumps(conf).encode(), **ENV)
    assert (rc, out) == (0, None)
    assert "DEL c1: no netns '/run/netns/none'" in log_file.read_text()
    assert err == ""  # info goes to the file only; stdout and stderr stay clean
