"""The helper container's privileges, as the chart renders them, are enough and all are needed.

No kubelet here, so the container is reproduced around the real `bin/bond serve` with the
kernel's own tools: a mount namespace of its own whose propagation is the chart's netns mount
(`unshare --mount --propagation slave` is what `mountPropagation: HostToContainer` makes), the
host network (the chart's `hostNetwork: true`), and root with only the capabilities the chart
adds (`setpriv --bounding-set`: what a runtime does with `drop: [ALL]` and `add`). The host paths
the chart mounts at the same paths are simply the host's here. This host has no bonding module,
so an ADD through the helper ends at the kernel's refusal to make the bond: by then the helper has
opened the pod's netns, entered it and listed its links, which is what its privileges are for. The
`kernel` test does the whole ADD and DEL in the VM, whose kernel bonds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chart.render import CHART, REPO, one, render
from tests.poll import poll
from tests.rigs.netns import PodNet, ip

BOND = REPO / "bin" / "bond"
PROPAGATION = {"HostToContainer": "slave", "None": "private"}
# What the chart adds (checked against the render below; the VM test has no helm at hand).
CHART_CAPABILITIES = ["NET_ADMIN", "SYS_ADMIN"]


@pytest.fixture(scope="module")
def helper_container() -> dict[str, object]:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (namespaces, capabilities)", pytrace=False)
    if not BOND.exists():
        pytest.fail(f"{BOND} is missing: run `make build` (./build.sh)", pytrace=False)
    pod = one(render(CHART / "ci" / "helper-values.yaml"), "DaemonSet")["spec"]["template"]
    (helper,) = pod["spec"]["containers"]
    assert pod["spec"]["hostNetwork"] is True
    return dict(helper)


def _capabilities(container: dict[str, object]) -> list[str]:
    security = container["securityContext"]
    assert isinstance(security, dict)
    assert security["capabilities"]["drop"] == ["ALL"]
    added: list[str] = security["capabilities"]["add"]
    return added


def _propagation(container: dict[str, object]) -> str:
    mounts = container["volumeMounts"]
    assert isinstance(mounts, list)
    (netns,) = [m for m in mounts if m["name"] == "netns"]
    return PROPAGATION[netns.get("mountPropagation", "None")]


@contextmanager
def _helper(
    tmp_path: Path, capabilities: list[str], propagation: str, start_timeout: float = 60
) -> Iterator[Path]:
    """`bin/bond serve` as the container runs it; yields its socket once a probe is answered."""
    socket = tmp_path / "run" / "helper.sock"
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    command = [
        "unshare", "--mount", "--propagation", propagation,
        "setpriv", f"--bounding-set={bounding}", "--",
        str(BOND), "serve", "--socket", str(socket),
        "--cni-path", "/usr/lib/cni",  # the chart passes hostBinDir; Debian's plugins live here
    ]  # fmt: skip
    log = tmp_path / "helper.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd="/")

    def ready() -> bool:
        probe = [str(BOND), "probe", "--socket", str(socket)]
        answered = subprocess.run(probe, capture_output=True, check=False).returncode == 0
        return proc.poll() is not None or answered

    try:
        poll(ready, timeout=start_timeout, what="the helper to answer a probe")
        assert proc.poll() is None, log.read_text()
        yield socket
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def late_netns() -> Iterator[str]:
    """Made after the helper started: a pod's netns pinned under /run/netns with its legs."""
    name = f"bond-layout-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _make_pod(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    for leg, peer in (("net1", "peer1"), ("net2", "peer2")):
        add = ["ip", "-n", name, "link", "add", leg, "type", "veth", "peer", "name", peer]
        subprocess.run(add, check=True)


def _add(socket: Path, netns: str) -> dict[str, object]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "layout",
        "type": "bond",
        "mode": "active-backup",
        "linksInContainer": True,
        "links": [{"name": "net1"}, {"name": "net2"}],
    }
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "layout",
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",
        "BOND_CNI_HELPER_SOCKET": str(socket),
    }
    done = subprocess.run(
        [str(BOND)], input=json.dumps(conf), env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "running in process" not in done.stderr  # the helper answered, not a fallback
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def test_two_capabilities_and_host_to_container_serve_a_netns_made_later(
    helper_container: dict[str, object], tmp_path: Path, late_netns: str
) -> None:
    capabilities = _capabilities(helper_container)
    assert capabilities == CHART_CAPABILITIES
    with _helper(tmp_path, capabilities, _propagation(helper_container)) as socket:
        _make_pod(late_netns)
        answer = _add(socket, late_netns)
    # Past the netns (open, setns, link dump): only the missing bonding module stops it.
    assert answer["msg"] == "netlink: create bond bond0 failed", answer
    assert "Operation not supported" in str(answer["details"])


def test_without_sys_admin_the_pods_netns_cannot_be_entered(
    helper_container: dict[str, object], tmp_path: Path, late_netns: str
) -> None:
    with _helper(tmp_path, ["NET_ADMIN"], _propagation(helper_container)) as socket:
        _make_pod(late_netns)
        answer = _add(socket, late_netns)
    assert str(answer["details"]).startswith("[Errno 1] setns /run/netns/"), answer


def test_without_host_to_container_a_netns_made_later_is_not_there(
    helper_container: dict[str, object], tmp_path: Path, late_netns: str
) -> None:
    with _helper(tmp_path, _capabilities(helper_container), "private") as socket:
        _make_pod(late_netns)
        answer = _add(socket, late_netns)
    # Only the file `ip netns add` pinned the netns on (mode 0) is there, not the netns.
    assert answer["msg"] == f"cannot open netns /run/netns/{late_netns}", answer


@pytest.mark.kernel
@pytest.mark.usefixtures("bonding")
def test_in_the_vm_the_helper_bonds_and_unbonds_with_two_capabilities(
    pod_net: PodNet, tmp_path: Path
) -> None:
    """A whole ADD and DEL, host-local IPAM included, through a helper confined as the chart's
    container is (its own mount namespace, HostToContainer, NET_ADMIN and SYS_ADMIN only)."""
    ipam = {"type": "host-local", "subnet": "192.0.2.0/24", "dataDir": str(tmp_path / "ipam")}
    conf = {
        "cniVersion": "1.0.0",
        "name": "layout",
        "type": "bond",
        "mode": "active-backup",
        "miimon": "100",
        "failOverMac": 1,
        "linksInContainer": True,
        "links": [{"name": n} for n in pod_net.links],
        "ipam": ipam,
    }
    env = {
        "CNI_CONTAINERID": "layout",
        "CNI_NETNS": pod_net.pod_netns_path,
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",
    }
    # Under TCG the helper's preload reads pyroute2 over 9p: tens of seconds, once.
    with _helper(tmp_path, CHART_CAPABILITIES, "slave", start_timeout=600) as socket:
        env["BOND_CNI_HELPER_SOCKET"] = str(socket)

        def call(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BOND)], input=json.dumps(conf), env={**env, "CNI_COMMAND": command},
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip

        added = call("ADD")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "running in process" not in added.stderr
        result = json.loads(added.stdout)
        assert result["ips"][0]["address"].startswith("192.0.2.")
        links = {
            link["ifname"]: link
            for link in json.loads(ip("-d", "-j", "link", "show", netns=pod_net.pod_netns))
        }
        assert links["bond0"]["linkinfo"]["info_kind"] == "bond"
        assert all(links[n].get("master") == "bond0" for n in pod_net.links)
        assert list((tmp_path / "ipam" / "layout").glob("192.0.2.*"))

        deleted = call("DEL")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    links = {
        link["ifname"]: link
        for link in json.loads(ip("-d", "-j", "link", "show", netns=pod_net.pod_netns))
    }
    assert "bond0" not in links
    assert all("master" not in links[n] for n in pod_net.links)
    assert not list((tmp_path / "ipam" / "layout").glob("192.0.2.*"))
