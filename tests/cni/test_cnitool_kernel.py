"""A real runtime (libcni's cnitool) drives bin/bond through ADD, CHECK, STATUS, GC and DEL.

The point here is the executable and its wire format, so the plugin runs as bin/bond, both ways a
node runs it: in process (each call pays the bundle's start-up, slow in the TCG VM, so one test
does it all) and through its warm helper (`bin/bond serve`, as the chart's DaemonSet runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.cni.conftest import README_CONFIG, require
from tests.cni.helper_rig import Helper, running_helper
from tests.cni.kernel import addresses, link_details, slaves_released
from tests.poll import poll
from tests.rigs.netns import PodNet, ip, ping

ROOT = Path(__file__).resolve().parents[2]
CNITOOL = Path(os.environ.get("CNITOOL", ROOT / ".cache" / "bin" / "cnitool"))
BOND = ROOT / "bin" / "bond"

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bonding")]


@pytest.fixture(autouse=True)
def _runtime_parts() -> None:
    require(CNITOOL, "run `make deps` (tools/build-go-tools.sh builds cnitool)")
    require(BOND, "run `make build` (./build.sh)")


def _cnitool(
    tmp: Path, *args: str, helper: Helper | None = None
) -> subprocess.CompletedProcess[str]:
    route = {"BOND_CNI_HELPER_SOCKET": str(helper.socket)} if helper else {"BOND_CNI_HELPER": "off"}
    env: Mapping[str, str] = {
        **route,
        "PATH": os.environ.get("PATH", ""),
        "NETCONFPATH": str(tmp / "net.d"),
        "CNI_PATH": f"{BOND.parent}:/usr/lib/cni",
        "CNI_IFNAME": "bond0",
        "CAP_ARGS": json.dumps({"mac": "02:00:5e:10:00:01"}),
        "CNI_CACHE_DIR": str(tmp / "cache"),
    }
    return subprocess.run(
        [str(CNITOOL), *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helper]:
    # The helper's preload reads the plugin's modules over 9p under TCG: tens of seconds, once.
    with running_helper(
        tmp_path_factory.mktemp("helper") / "run" / "helper.sock",
        "--cni-path",
        f"{BOND.parent}:/usr/lib/cni",  # what cnitool passes as CNI_PATH (below)
        start_timeout=600,
    ) as running:
        yield running


def test_cnitool_add_check_status_gc_del(pod_net: PodNet, tmp_path: Path) -> None:
    _add_check_status_gc_del(pod_net, tmp_path, None)


def test_cnitool_through_the_helper(pod_net: PodNet, tmp_path: Path, helper: Helper) -> None:
    before = {c: helper.served(c) for c in ("ADD", "CHECK", "STATUS", "GC", "DEL")}
    _add_check_status_gc_del(pod_net, tmp_path, helper)
    # libcni's GC first DELs every cached attachment that is not in its valid list (cnitool
    # passes none), then calls GC: two DELs in all, both answered by the helper.
    assert {c: helper.served(c) - n for c, n in before.items()} == {
        "ADD": 1,
        "CHECK": 1,
        "STATUS": 1,
        "GC": 1,
        "DEL": 2,
    }
    # The netns is gone: DEL through the helper still succeeds.
    ip("netns", "delete", pod_net.pod_netns)
    deleted = _cnitool(tmp_path, "del", "bondnet", pod_net.pod_netns_path, helper=helper)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    # What makes the helper fast: every child finds its modules preloaded.
    assert "imported after preload" not in helper.log()


def _add_check_status_gc_del(pod_net: PodNet, tmp_path: Path, helper: Helper | None) -> None:
    (tmp_path / "net.d").mkdir()
    conflist = {
        "cniVersion": "1.1.0",
        "name": "bondnet",
        "plugins": [
            {
                "type": "bond",
                "mode": "active-backup",  # failOverMac none: veths take the bond's MAC
                "miimon": "100",
                "links": [{"name": "net1"}, {"name": "net2"}],
                "capabilities": {"mac": True},
                "ipam": {
                    "type": "host-local",
                    "subnet": "192.0.2.0/24",
                    "rangeStart": "192.0.2.20",
                    "dataDir": str(tmp_path / "ipam"),
                },
            }
        ],
    }
    (tmp_path / "net.d" / "bondnet.conflist").write_text(json.dumps(conflist))
    netns = pod_net.pod_netns_path

    added = _cnitool(tmp_path, "add", "bondnet", netns, helper=helper)
    assert added.returncode == 0, added.stdout + added.stderr
    out = json.loads(added.stdout)
    assert out["cniVersion"] == "1.1.0"
    assert [i["name"] for i in out["interfaces"]] == ["bond0", "net1", "net2"]
    assert out["ips"] == [{"address": "192.0.2.20/24", "gateway": "192.0.2.1", "interface": 0}]
    bond = link_details(pod_net, "bond0")
    assert bond is not None and bond["address"] == "02:00:5e:10:00:01"
    assert addresses(pod_net, "bond0") == {"192.0.2.20/24"}
    poll(
        lambda: ping(pod_net.pod_netns, pod_net.gateway), timeout=30, what="ping via cnitool's bond"
    )

    for command in ("check", "status", "gc"):
        done = _cnitool(tmp_path, command, "bondnet", netns, helper=helper)
        assert done.returncode == 0, (command, done.stdout, done.stderr)

    deleted = _cnitool(tmp_path, "del", "bondnet", netns, helper=helper)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert slaves_released(pod_net)
    assert not list((tmp_path / "ipam" / "bondnet").glob("192.0.2.*"))


def test_cnitool_with_the_bond_cni_readme_config(pod_net: PodNet, tmp_path: Path) -> None:
    # bond-cni's README NetworkAttachmentDefinition config, as is but for host-local's dataDir
    # (the VM's root filesystem is read-only).
    (tmp_path / "net.d").mkdir()
    conf = {**README_CONFIG, "ipam": {**README_CONFIG["ipam"], "dataDir": str(tmp_path / "ipam")}}
    (tmp_path / "net.d" / "bond-net1.conf").write_text(json.dumps(conf))
    added = _cnitool(tmp_path, "add", "bond-net1", pod_net.pod_netns_path)
    assert added.returncode == 0, added.stdout + added.stderr
    out = json.loads(added.stdout)
    assert out["cniVersion"] == "0.3.1"
    assert out["ips"] == [
        {"version": "4", "address": "10.56.217.2/24", "gateway": "10.56.217.1", "interface": 0}
    ]
    assert addresses(pod_net, "bond0") == {"10.56.217.2/24"}
    deleted = _cnitool(tmp_path, "del", "bond-net1", pod_net.pod_netns_path)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert slaves_released(pod_net)
