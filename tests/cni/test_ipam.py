"""IPAM delegation against Debian's real host-local and static plugins (no netns needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cni.core import result
from cni.core.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from cni.plugin.ipam import Ipam
from tests.cni.conftest import ALL_VERSIONS, bond_config, require


@pytest.fixture(autouse=True)
def _ipam_plugins() -> None:
    require(Path("/usr/lib/cni/host-local"), "run `make deps` (containernetworking-plugins)")


def _env(container: str = "c1") -> dict[str, str]:
    return {
        "CNI_CONTAINERID": container,
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",
    }


def _host_local(tmp: Path, version: str) -> dict[str, Any]:
    return bond_config(
        version,
        ipam={
            "type": "host-local",
            "subnet": "192.0.2.0/24",
            "gateway": "192.0.2.1",
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(tmp),
        },
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_host_local_add_check_del_any_version(tmp_path: Path, version: str) -> None:
    conf = _host_local(tmp_path, version)
    ipam = Ipam(conf, _env())
    got = ipam.add()  # 1.1.0 is retried at 1.0.0: Debian's plugins predate 1.1.0
    assert [ip.address for ip in got.ips] == ["192.0.2.2/24"]
    assert (tmp_path / "bondnet" / "192.0.2.2").read_text().startswith("c1")
    if version not in {"0.3.0", "0.3.1"}:
        bond = result.Interface("bond0", "02:00:00:00:00:01", "/proc/self/ns/net")
        ipam.check(result.build(result.Result(), bond, [], got))
    ipam.delete()
    assert not (tmp_path / "bondnet" / "192.0.2.2").exists()
    ipam.delete()  # again: host-local forgets quietly


def test_gc_and_status_skip_an_ipam_older_than_1_1(tmp_path: Path) -> None:
    conf = {**_host_local(tmp_path, "1.1.0"), "cni.dev/valid-attachments": []}
    ipam = Ipam(conf, _env())
    ipam.gc()
    ipam.status()


def test_static(tmp_path: Path) -> None:
    conf = bond_config(
        "0.4.0", ipam={"type": "static", "addresses": [{"address": "2001:db8::5/64"}]}
    )
    got = Ipam(conf, _env()).add()
    assert [(ip.address, ip.family) for ip in got.ips] == [("2001:db8::5/64", 6)]


def test_ipam_errors_keep_their_code(tmp_path: Path) -> None:
    conf = bond_config(
        "1.0.0", ipam={"type": "host-local", "subnet": "not-a-subnet", "dataDir": str(tmp_path)}
    )
    with pytest.raises(CNIError) as caught:
        Ipam(conf, _env()).add()
    assert caught.value.msg.startswith("IPAM host-local ADD")
    assert caught.value.code != INCOMPATIBLE_VERSION


@pytest.mark.parametrize("command", ["ADD", "STATUS"])
def test_an_ipam_that_prints_no_json_is_error_6_naming_it(tmp_path: Path, command: str) -> None:
    # Fault injection: a real executable in its own CNI_PATH stands in for a broken IPAM plugin.
    script = tmp_path / "garbage"
    script.write_text("#!/bin/sh\ncat >/dev/null\necho 'this is not JSON'\n")
    script.chmod(0o755)
    ipam = Ipam(
        bond_config("1.1.0", ipam={"type": "garbage"}), {**_env(), "CNI_PATH": str(tmp_path)}
    )
    with pytest.raises(CNIError) as caught:
        ipam.add() if command == "ADD" else ipam.status()
    asked = "ADD" if command == "ADD" else "VERSION"  # STATUS first asks what it speaks
    assert caught.value.code == DECODE_FAILURE
    assert caught.value.msg.startswith(f"IPAM garbage {asked} printed no CNI result")
    assert "this is not JSON" in caught.value.details
