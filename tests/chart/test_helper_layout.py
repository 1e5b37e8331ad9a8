"""The helper container's privileges, as the chart renders them, are enough and all are needed.

No kubelet here, so the container is reproduced around the real `bin/bond serve` with the
kernel's own tools: a mount namespace of its own whose propagation is the chart's netns mount
(`unshare --mount --propagation slave` is what `mountPropagation: HostToContainer` makes), the
host network (the chart's `hostNetwork: true`), and root with only the capabilities the chart
adds (`setpriv --bounding-set`: what a runtime does with `drop: [ALL]` and `add`). The host paths
the chart mounts at the same paths are simply the host's here. This host has no bonding module,
so an ADD through the helper ends at the kernel's refusal to make the bond: by then the helper has
opened the pod's netns, entered it and listed its links, which is what its privileges are for.
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
from tests.rigs.cluster_procs import poll

BOND = REPO / "bin" / "bond"
PROPAGATION = {"HostToContainer": "slave", "None": "private"}


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
def _helper(tmp_path: Path, capabilities: list[str], propagation: str) -> Iterator[Path]:
    """`bin/bond serve` as the container runs it; yields its socket once a probe is answered."""
    socket = tmp_path / "run" / "helper.sock"
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    command = [
        "unshare", "--mount", "--propagation", propagation,
        "setpriv", f"--bounding-set={bounding}", "--",
        str(BOND), "serve", "--socket", str(socket),
    ]  # fmt: skip
    log = tmp_path / "helper.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd="/")

    def ready() -> bool:
        probe = [str(BOND), "probe", "--socket", str(socket)]
        answered = subprocess.run(probe, capture_output=True, check=False).returncode == 0
        return proc.poll() is not None or answered

    try:
        poll(ready, timeout=60, what="the helper to answer a probe")
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
    assert capabilities == ["NET_ADMIN", "SYS_ADMIN"]
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
