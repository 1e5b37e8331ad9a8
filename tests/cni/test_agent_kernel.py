"""The bond health agent against real kernel bonds: records written by the plugin, a real agent
process watching several pod netns, switch ports taken down and back, the agent killed and
restarted, a netns deleted under it.

Runs inside the kernel VM (`pytest -m kernel`). The agent runs as its own process (`python -m cni
agent --kube off`), so a kill is a real SIGKILL; with `--kube off` it writes what it would send
to the API server (the condition and the Events) as JSON lines on stdout, which the test reads.
The Kubernetes side of the same reports is tests/cni/test_agent_cluster.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cni.core.errors import CNIError
from cni.plugin import dispatch
from tests.cni.conftest import bond_config
from tests.poll import poll
from tests.rigs.netns import PodNet, active_slave, ip, pod_network

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("bonding")]

STARTUP = 180.0  # seconds: a fresh interpreter importing the agent under TCG
CHANGE = 60.0  # seconds for a change to show; it takes a second or two, the VM is slow


@pytest.fixture
def records_dir() -> Iterator[Path]:
    folder = Path("/run/bond-cni") / f"test-{secrets.token_hex(4)}"
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _conf(folder: Path, **fields: Any) -> dict[str, Any]:
    return bond_config(
        mode="active-backup",
        failOverMac=1,
        miimon=50,
        attachmentsDir=str(folder),
        **fields,
    )


def _call(
    command: str, net: PodNet | None, conf: dict[str, Any], container: str, pod: str = ""
) -> dict[str, Any] | None:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": net.pod_netns_path if net else "",
        "CNI_IFNAME": "bond0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": ";".join(
            [
                "IgnoreUnknown=1",
                "K8S_POD_NAMESPACE=team-a",
                f"K8S_POD_NAME={pod}",
                f"K8S_POD_UID=u-{pod}",
            ]
        ),
    }
    return dispatch.run(command, env, json.dumps(conf).encode())


def test_records_follow_add_del_gc_and_a_failed_add_leaves_none(
    pod_net: PodNet, records_dir: Path
) -> None:
    conf = _conf(records_dir)
    _call("ADD", pod_net, conf, "c-rec", "web-0")
    record = json.loads((records_dir / "c-rec_bond0.json").read_text())
    assert record["pod_namespace"] == "team-a"
    assert record["pod_name"] == "web-0"
    assert record["pod_uid"] == "u-web-0"
    assert record["netns"] == pod_net.pod_netns_path
    assert record["slaves"] == ["net1", "net2"]
    assert record["monitor"]["mode"] == "active-backup"
    assert record["monitor"]["miimon"] == 50
    assert [p.name for p in records_dir.iterdir()] == ["c-rec_bond0.json"]  # no temp file

    _call("DEL", pod_net, conf, "c-rec", "web-0")
    assert list(records_dir.iterdir()) == []

    # IPAM refuses after the bond is made: the rollback takes the record too (none was written).
    bad = {**conf, "ipam": {"type": "static", "addresses": [{"address": "not-an-ip"}]}}
    with pytest.raises(CNIError):
        _call("ADD", pod_net, bad, "c-bad", "web-1")
    assert list(records_dir.iterdir()) == []

    _call("ADD", pod_net, conf, "c-stale", "web-2")
    gc = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
    _call("GC", None, gc, "", "")
    assert list(records_dir.iterdir()) == []


class _Agent:
    """One `bond agent` process; its stdout (the reports) in a file."""

    def __init__(self, folder: Path, port: int, out: Path) -> None:
        self.out = out
        self.port = port
        argv = [sys.executable, "-m", "cni", "agent", "--kube", "off", "--records", str(folder)]
        argv += ["--metrics-address", "127.0.0.1", "--metrics-port", str(port), "--rescan", "30"]
        argv += ["--log-level", "DEBUG"]
        with out.open("w") as stdout, out.with_suffix(".log").open("a") as stderr:
            self.proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr)

    def reports(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def events(self, pod: str) -> list[str]:
        return [r["event"] for r in self.reports() if r["pod"] == pod and "event" in r]

    def metrics(self) -> dict[tuple[str, str], float]:
        """{(metric name, pod): value} of the bond_* samples; {} while nothing answers."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        found = {}
        for line in text.splitlines():
            if not line.startswith("bond_"):
                continue
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            pod = labels.split('pod="', 1)[1].split('"', 1)[0]
            if name == "bond_active_slave_info":
                name += ":" + labels.split('slave="', 1)[1].split('"', 1)[0]
            found[(name, pod)] = float(value)
        return found

    def wait(self, condition: Callable[[], object], what: str, timeout: float = CHANGE) -> None:
        """poll(), with what the agent said and logged in the error."""

        def error(message: str) -> Exception:
            log = self.out.with_suffix(".log").read_text()[-3000:]
            return TimeoutError(f"{message}\nreports: {self.reports()}\nlog tail:\n{log}")

        poll(condition, timeout, what, interval=0.5, error=error)

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _has(agent: _Agent, want: dict[tuple[str, str], float]) -> bool:
    got = agent.metrics()
    return all(got.get(key) == value for key, value in want.items())


def test_agent_reports_failover_degradation_recovery_across_a_restart(
    records_dir: Path, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        nets = {pod: stack.enter_context(pod_network()) for pod in ("web-0", "web-1", "web-2")}
        conf = _conf(records_dir)
        for pod, net in nets.items():
            _call("ADD", net, conf, f"c-{pod}", pod)
        port = _free_port()
        agent = _Agent(records_dir, port, tmp_path / "agent1.jsonl")
        stack.callback(lambda: agent.proc.poll() is None and agent.stop(signal.SIGKILL))

        every_bond_up = {("bond_slaves_up", pod): 2.0 for pod in nets}
        every_bond_up |= {("bond_degraded", pod): 0.0 for pod in nets}
        agent.wait(lambda: _has(agent, every_bond_up), "all bonds up in the metrics", STARTUP)
        conditions = [r for r in agent.reports() if "condition" in r]
        assert sorted((r["pod"], r["status"]) for r in conditions) == [
            (pod, "True") for pod in sorted(nets)
        ]
        assert not any("event" in r for r in agent.reports())  # healthy from the start: quiet

        # web-0: the active leg's switch port dies. The bond fails over and is degraded.
        net = nets["web-0"]
        active = active_slave(net.pod_netns, "bond0")
        assert active in net.links
        other = next(link for link in net.links if link != active)
        port_of = dict(zip(net.links, net.switch_ports, strict=True))
        ip("link", "set", port_of[active], "down", netns=net.switch_netns)
        degraded = {
            ("bond_slaves_up", "web-0"): 1.0,
            ("bond_degraded", "web-0"): 1.0,
            ("bond_failovers_total", "web-0"): 1.0,
            (f"bond_active_slave_info:{other}", "web-0"): 1.0,
            ("bond_slaves", "web-0"): 2.0,
            ("bond_slaves_up", "web-1"): 2.0,
        }
        agent.wait(lambda: _has(agent, degraded), "web-0 degraded in the metrics")
        # The slave's carrier goes before the bond's monitor fails over: the two may be told
        # apart or together, in either order; each once.
        agent.wait(
            lambda: sorted(agent.events("web-0")) == ["BondDegraded", "BondFailedOver"],
            "web-0's failover and degradation reported",
        )
        (message,) = [r["message"] for r in agent.reports() if r.get("event") == "BondDegraded"]
        assert f"down {active} (" in message and f"up {other}" in message
        last = [r for r in agent.reports() if r["pod"] == "web-0" and "condition" in r][-1]
        assert (last["status"], last["reason"]) == ("False", "SlavesDown")

        # What was sent is on disk before the agent is killed (it writes it right after).
        sent = records_dir / ".agent" / "c-web-0_bond0.json"
        agent.wait(lambda: sent.exists() and '"degraded"' in sent.read_text(), "web-0's sent state")
        # Killed mid-way; web-0 recovers and web-1 loses both legs while no agent runs.
        assert agent.stop(signal.SIGKILL) == -signal.SIGKILL
        ip("link", "set", port_of[active], "up", netns=net.switch_netns)
        for sw_port in nets["web-1"].switch_ports:
            ip("link", "set", sw_port, "down", netns=nets["web-1"].switch_netns)
        poll(
            lambda: "LOWER_UP" in ip("link", "show", active, netns=net.pod_netns),
            CHANGE,
            "web-0's leg back",
        )

        agent = _Agent(records_dir, port, tmp_path / "agent2.jsonl")
        changed = {
            ("bond_slaves_up", "web-0"): 2.0,
            ("bond_degraded", "web-0"): 0.0,
            ("bond_slaves_up", "web-1"): 0.0,
            ("bond_degraded", "web-1"): 1.0,
        }
        agent.wait(lambda: _has(agent, changed), "the restarted agent's metrics", STARTUP)
        agent.wait(
            lambda: "BondRecovered" in agent.events("web-0") and agent.events("web-1"),
            "the changes made while the agent was down, reported",
        )
        assert agent.events("web-0")[-1] == "BondRecovered"
        assert "BondDegraded" not in agent.events("web-0")  # not sent again
        assert agent.events("web-1") == ["BondDown"]
        assert agent.events("web-2") == []  # unchanged, so the new agent is quiet about it

        # A netns deleted under the agent: its bond leaves the metrics quietly.
        ip("netns", "delete", nets["web-2"].pod_netns)
        agent.wait(
            lambda: ("bond_slaves_up", "web-2") not in agent.metrics(),
            "web-2 gone from the metrics",
        )
        assert agent.events("web-2") == []
        assert agent.proc.poll() is None

        # DEL removes the record; the agent stops watching; nothing about the teardown is said.
        before = len(agent.reports())
        _call("DEL", nets["web-0"], conf, "c-web-0", "web-0")
        agent.wait(
            lambda: ("bond_slaves_up", "web-0") not in agent.metrics(), "web-0 gone after DEL"
        )
        assert len(agent.reports()) == before
        assert not (records_dir / ".agent" / "c-web-0_bond0.json").exists()
        assert agent.stop(signal.SIGTERM) == 0
        for pod in ("web-1", "web-2"):
            _call("DEL", nets[pod], conf, f"c-{pod}", pod)
    assert sorted(os.listdir(records_dir)) == [".agent"]
