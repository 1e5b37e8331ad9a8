"""The agent's watcher on the host: records picked up through inotify, a real netns watched
through its link events, a netns deleted under it, a record removed.

This host's kernel has no bonding module, so the recorded bond is missing here and its slaves are
a veth pair: what is checked is the watching (the bonds themselves: test_agent_kernel.py, in
the VM).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni.agent.kube import LogSink
from cni.agent.report import Reporter
from cni.agent.watch import Agent
from cni.core import records
from cni.plugin import records as files
from tests.poll import poll
from tests.rigs.netns import ip, ip_batch


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)", pytrace=False)
    name = f"bi-agent-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip_batch([f"netns delete {name}"], force=True)


def _record(netns: str, container: str = "c1") -> records.Attachment:
    return records.Attachment(
        network="bondnet",
        container_id=container,
        netns=f"/run/netns/{netns}",
        bond="bond0",
        slaves=("net1", "net2"),
        pod_namespace="team-a",
        pod_name=f"pod-{container}",
        pod_uid="",
        monitor=records.Monitor("active-backup", 100, 0, 0, 0),
    )


def test_records_come_and_go_and_a_deleted_netns_is_dropped(netns: str, tmp_path: Path) -> None:
    ip("link", "add", "net1", "type", "veth", "peer", "name", "net2", netns=netns)
    out = io.StringIO()
    reporter = Reporter(str(tmp_path), LogSink(out))
    agent = Agent(str(tmp_path), reporter, rescan=3600)  # inotify only: the timer never fires
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        files.save(str(tmp_path), _record(netns))
        files.save(str(tmp_path), _record("bi-no-such-netns", "c2"))
        watched = poll(lambda: agent.watched, 10, "the record picked up")
        assert list(watched) == ["c1_bond0.json"]  # the other's netns does not exist
        (bond,) = poll(reporter.bonds, 10, "its state read")
        assert (bond.state.present, bond.state.enslaved, bond.state.up) == (False, 0, ())
        reporter.send_pending()
        reports = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [r.get("reason") or r.get("event") for r in reports] == ["BondMissing", "BondDown"]

        ip("link", "set", "net1", "up", netns=netns)  # a link event: read again, nothing new
        ip("netns", "delete", netns)
        poll(lambda: not reporter.bonds(), 10, "the deleted netns dropped")
        assert agent.watched == {}
        assert reporter.pending() == set()

        files.remove(str(tmp_path), "c1", "bond0")
        files.remove(str(tmp_path), "c2", "bond0")
        poll(lambda: not (tmp_path / ".agent" / "c1_bond0.json").exists(), 10, "state forgotten")
    finally:
        stop.set()
        agent.stop()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rescan", "0"], "--rescan must be > 0"),
        (["--api-server", "https://127.0.0.1:6443"], "--api-server needs --token-file"),
        ([], "KUBERNETES_SERVICE_HOST is not set: not running in a pod"),
    ],
)
def test_agent_command_line_errors_say_what_to_fix(
    args: list[str], message: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    argv = [sys.executable, "-m", "cni", "agent", "--records", str(tmp_path), *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
