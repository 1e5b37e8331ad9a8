"""The kernel rig's own tests: bonds in the VM, pod_net's plumbing, the outer/inner mapping."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.poll import poll
from tests.rigs.netns import (
    PodNet,
    active_slave,
    bonding_status,
    in_netns,
    ip,
    ping,
    pod_network,
)
from tests.rigs.vm import VmError, find_kernel

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POD_ADDRESS = "192.0.2.10/24"


def _make_bond(net: PodNet, bond: str = "bond0") -> None:
    mode = ("mode", "active-backup", "miimon", "100")
    ip("link", "add", bond, "type", "bond", *mode, netns=net.pod_netns)
    for link in net.links:
        ip("link", "set", link, "master", bond, netns=net.pod_netns)
    ip("link", "set", bond, "up", netns=net.pod_netns)


@pytest.mark.kernel
def test_bond_made_with_iproute2_is_visible(bonding: None, pod_net: PodNet) -> None:
    for link in pod_net.links:
        assert "state DOWN" in ip("link", "show", link, netns=pod_net.pod_netns)
        assert "inet" not in ip("addr", "show", link, netns=pod_net.pod_netns)

    _make_bond(pod_net)

    details = ip("-d", "link", "show", "bond0", netns=pod_net.pod_netns)
    assert "bond mode active-backup" in details
    assert "miimon 100" in details
    status = bonding_status(pod_net.pod_netns, "bond0")
    assert "Bonding Mode: fault-tolerance (active-backup)" in status
    assert "Slave Interface: net1" in status
    assert "Slave Interface: net2" in status


@pytest.mark.kernel
def test_pod_net_bond_pings_the_gateway_and_fails_over(bonding: None, pod_net: PodNet) -> None:
    pod = pod_net.pod_netns
    _make_bond(pod_net)
    ip("addr", "add", POD_ADDRESS, "dev", "bond0", netns=pod)
    poll(lambda: ping(pod, pod_net.gateway), timeout=30, what="a ping through bond0")

    active = active_slave(pod, "bond0")
    assert active in pod_net.links
    dead_port = pod_net.switch_ports[pod_net.links.index(active)]
    ip("link", "set", dead_port, "down", netns=pod_net.switch_netns)

    poll(
        lambda: active_slave(pod, "bond0") not in (active, None),
        timeout=10,
        what=f"bond0 to leave {active} after switch port {dead_port} went down",
    )
    poll(lambda: ping(pod, pod_net.gateway), timeout=30, what="a ping after the failover")
    assert f"Slave Interface: {active}\nMII Status: down" in bonding_status(pod, "bond0")


@pytest.mark.kernel
def test_pod_net_namespaces_are_usable_by_path(pod_net: PodNet) -> None:
    assert Path(pod_net.pod_netns_path).exists()
    links = in_netns(pod_net.pod_netns, "ip", "-br", "link")
    assert all(link in links for link in pod_net.links)


@pytest.mark.kernel
def test_pod_network_is_removed_even_when_the_test_fails(bonding: None) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), pod_network() as net:
        names = (net.pod_netns, net.switch_netns, net.peer_netns)
        assert set(names) <= set(ip("netns", "list").split())
        _make_bond(net)
        raise RuntimeError("the test failed")
    assert not set(names) & set(ip("netns", "list").split())
    assert "swp1" not in ip("-br", "link")  # no veth end left over in the root netns


def test_newest_kernel_with_a_bonding_module_is_chosen(tmp_path: Path) -> None:
    boot, modules = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    kernels = [("6.1.0-9-amd64", True), ("6.1.0-56-amd64", True), ("6.12.1", False)]
    for version, has_bonding in kernels:
        (boot / f"vmlinuz-{version}").write_bytes(b"")
        module_dir = modules / version / "kernel/drivers/net/bonding"
        module_dir.mkdir(parents=True)
        if has_bonding:
            (module_dir / "bonding.ko.xz").write_bytes(b"")
    kernel = find_kernel(boot, modules)
    assert kernel.version == "6.1.0-56-amd64"
    assert kernel.image == boot / "vmlinuz-6.1.0-56-amd64"


def test_missing_kernel_says_run_make_deps(tmp_path: Path) -> None:
    with pytest.raises(VmError, match="run `make deps`"):
        find_kernel(tmp_path, tmp_path)


# --- the outer/inner mapping -------------------------------------------------------------------
# These run a real outer pytest in a subprocess on a throwaway project. Its inner pytest runs on the
# host (BOND_INJECTOR_KERNEL_RUNNER=host), not in a second VM, which would cost a minute or two of
# our two shared cores: the code path from node IDs to inner run to results file to the outer
# reports is the same one the VM runner uses, and the VM runner itself is exercised by the kernel
# tests above in every full run.

_THROWAWAY_INI = """\
[pytest]
markers =
    kernel: inside the VM
    cluster: needs the control plane
filterwarnings = error
"""

_THROWAWAY_TESTS = """\
import os
import pytest

@pytest.mark.kernel
def test_passes():
    assert os.environ["BOND_INJECTOR_IN_VM"] == "1"

@pytest.mark.kernel
def test_fails():
    assert 1 + 1 == 3, "deliberate inner failure"

@pytest.mark.kernel
def test_skips():
    pytest.skip("no second NIC here")

@pytest.mark.kernel
@pytest.mark.parametrize("version", ["0.3.1", "1.1.0"])
@pytest.mark.parametrize("mode", ["active-backup", "802.3ad"])
def test_param(mode, version):
    assert (mode, version) != ("802.3ad", "0.3.1"), "deliberate failure of one combination"

def test_on_the_host():
    assert "BOND_INJECTOR_IN_VM" not in os.environ
"""


def _outer_pytest(
    project: Path, *args: str, runner: str = "host", path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOND_INJECTOR_")}
    env |= {"BOND_INJECTOR_KERNEL_RUNNER": runner, "PYTHONPATH": str(PROJECT_ROOT)}
    if path is not None:
        env["PATH"] = path
    report = f"--junitxml={project / 'report.xml'}"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.rigs.kernel_plugin", report, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _outcomes(project: Path) -> dict[str, tuple[str, str]]:
    """{test name: (outcome, message)} from the outer run's JUnit XML, the report CI tools read:
    what each test came to, not how pytest's terminal words and lays it out."""
    outcomes = {}
    for case in ET.parse(project / "report.xml").iter("testcase"):  # noqa: S314 - our own run
        found = [
            (e.tag, e.get("message", "")) for e in case if e.tag in ("failure", "error", "skipped")
        ]
        outcomes[case.get("name", "")] = found[0] if found else ("passed", "")
    return outcomes


def _throwaway_project(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "pytest.ini").write_text(_THROWAWAY_INI)
    (tmp_path / "test_throwaway.py").write_text(tests)
    return tmp_path


def test_inner_failure_fails_the_outer_run_under_its_own_name(tmp_path: Path) -> None:
    """A real outer pytest on a throwaway project with a deliberately failing kernel test.

    Its inner pytest runs on the host (BOND_INJECTOR_KERNEL_RUNNER=host), not in a second VM: the
    same inner command, results file and outer mapping as the VM runner, without 2-4 more minutes
    of TCG on shared cores. The real VM path is checked by the kernel tests of every full run.
    """
    done = _outer_pytest(_throwaway_project(tmp_path, _THROWAWAY_TESTS))
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    outcomes = _outcomes(tmp_path)
    outcome, message = outcomes.pop("test_fails")  # failed, with the inner failure's message
    assert outcome == "failure" and "deliberate inner failure" in message
    assert outcomes.pop("test_skips") == ("skipped", "no second NIC here")
    # Parametrised by two axes: each combination is reported under its own id, and the one
    # that fails inside fails outside without hiding the others.
    outcome, message = outcomes.pop("test_param[802.3ad-0.3.1]")
    assert outcome == "failure" and "deliberate failure of one combination" in message
    assert outcomes == {
        name: ("passed", "")
        for name in (
            "test_passes",
            "test_param[active-backup-0.3.1]",
            "test_param[active-backup-1.1.0]",
            "test_param[802.3ad-1.1.0]",
            "test_on_the_host",
        )
    }
    assert "kernel rig: host run" in out


def test_inner_crash_fails_every_kernel_test(tmp_path: Path) -> None:
    """An inner run that dies without writing results fails every kernel test, passed or not."""
    tests = _THROWAWAY_TESTS + textwrap.dedent("""
        @pytest.mark.kernel
        def test_kills_the_inner_run():
            os._exit(7)
    """)
    done = _outer_pytest(_throwaway_project(tmp_path, tests))
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "the inner pytest wrote no" in out
    # Every kernel test fails, even those that passed inside; the host test passes.
    outcomes = {name: outcome for name, (outcome, _) in _outcomes(tmp_path).items()}
    assert outcomes.pop("test_on_the_host") == "passed"
    assert len(outcomes) == 8 and set(outcomes.values()) == {"failure"}, outcomes


def test_no_kernel_test_selected_boots_nothing(tmp_path: Path) -> None:
    done = _outer_pytest(_throwaway_project(tmp_path, _THROWAWAY_TESTS), "-m", "not kernel")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _outcomes(tmp_path) == {"test_on_the_host": ("passed", "")}  # the others deselected
    assert "kernel rig" not in done.stdout
    assert not (tmp_path / ".cache").exists()


def test_a_vm_that_cannot_start_fails_every_kernel_test(tmp_path: Path) -> None:
    """The real VM runner on a PATH without qemu: every kernel test fails, naming the fix."""
    done = _outer_pytest(_throwaway_project(tmp_path, _THROWAWAY_TESTS), runner="vm", path="/none")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "qemu-system-x86_64 not found (apt package qemu-system-x86); run `make deps`" in out
    outcomes = {name: outcome for name, (outcome, _) in _outcomes(tmp_path).items()}
    assert outcomes.pop("test_on_the_host") == "passed"
    assert len(outcomes) == 7 and set(outcomes.values()) == {"failure"}, outcomes
