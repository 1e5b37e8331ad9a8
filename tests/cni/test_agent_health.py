"""The agent's pure core and its memory: bond state from links, the signals of each change, and
what a restarted agent does not say again."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from cni.agent import health
from cni.agent.kube import LogSink
from cni.agent.report import Condition, PodRef, Reporter, SinkError
from cni.core import records
from cni.kernel.rtnl import Link

RECORD = records.Attachment(
    network="bondnet",
    container_id="c1",
    netns="/run/netns/p",
    bond="bond0",
    slaves=("net1", "net2"),
    pod_namespace="team-a",
    pod_name="web-0",
    pod_uid="",
    monitor=records.Monitor("active-backup", 100, 0, 0, 0),
)


def link(index: int, name: str, **kw: Any) -> Link:
    fields: dict[str, Any] = {
        "mac": "02:00:00:00:00:01",
        "mtu": 1500,
        "up": True,
        "carrier": True,
        "master": None,
        "kind": None,
        "bond": {},
        "parent_bus": None,
        "parent_dev": None,
    }
    fields.update(kw)
    return Link(index=index, name=name, **fields)


def links(active: int | None = 2, **slaves: dict[str, Any]) -> dict[str, Link]:
    bond = link(1, "bond0", kind="bond", bond={"mode": 1, "active_slave": active or 0})
    found = {"bond0": bond}
    for index, name in ((2, "net1"), (3, "net2")):
        kw: dict[str, Any] = {"master": 1, "slave": {"mii_status": 0}}
        kw.update(slaves.get(name, {}))
        found[name] = link(index, name, **kw)
    return found


def state() -> health.BondState:
    return health.read(RECORD, links())


def test_read_names_each_slaves_problem() -> None:
    assert state().summary() == health.Summary("healthy", ("net1", "net2"), (), "net1", 2)
    got = health.read(
        RECORD,
        links(
            active=3,
            net1={"carrier": False, "slave": {"mii_status": 2}},
        ),
    )
    assert got.summary() == health.Summary("degraded", ("net2",), ("net1 (no carrier)",), "net2", 2)
    assert health.read(RECORD, links(net1={"master": None})).slaves[0].why == "not in the bond"
    assert health.read(RECORD, links(net1={"slave": {"mii_status": 1}})).slaves[0].why == (
        "link monitor says down"
    )
    gone = health.read(RECORD, {}).summary()
    assert (gone.level, gone.present) == ("down", False)


HEALTHY = health.Summary("healthy", ("net1", "net2"), (), "net1", 2)
NET1_DOWN = health.Summary("degraded", ("net2",), ("net1 (no carrier)",), "net2", 2)
ALL_DOWN = health.Summary("down", (), ("net1 (no carrier)", "net2 (no carrier)"), None, 2)


@pytest.mark.parametrize(
    ("before", "after", "reasons"),
    [
        (None, HEALTHY, []),
        (HEALTHY, HEALTHY, []),
        (HEALTHY, NET1_DOWN, ["BondFailedOver", "BondDegraded"]),
        (NET1_DOWN, ALL_DOWN, ["BondDown"]),
        (ALL_DOWN, HEALTHY, ["BondRecovered"]),
        (NET1_DOWN, HEALTHY, ["BondFailedOver", "BondRecovered"]),
        (None, NET1_DOWN, ["BondDegraded"]),
    ],
)
def test_signals_of_each_change(
    before: health.Summary | None, after: health.Summary, reasons: list[str]
) -> None:
    assert [s.reason for s in health.signals("bond0", before, after)] == reasons


def test_signal_messages_name_the_slaves_and_the_reason() -> None:
    failover, degraded = health.signals("bond0", HEALTHY, NET1_DOWN)
    assert failover.message == "bond bond0 failed over from net1 to net2; down: net1 (no carrier)"
    assert degraded.kind == "Warning"
    assert (
        degraded.message == "bond bond0 degraded, 1 of 2 slaves up: down net1 (no carrier); up net2"
    )
    (down,) = health.signals("bond0", NET1_DOWN, ALL_DOWN)
    assert down.message == "bond bond0 lost all legs: net1 (no carrier), net2 (no carrier)"
    assert health.condition("bond0", ALL_DOWN)[:2] == ("False", "AllSlavesDown")
    assert health.condition("bond0", HEALTHY) == (
        "True",
        "AllSlavesUp",
        "bond bond0: 2 of 2 slaves up, active net1",
    )


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_reporter_sends_changes_once_and_a_restart_does_not_repeat_them(tmp_path: Path) -> None:
    out = io.StringIO()
    reporter = Reporter(str(tmp_path), LogSink(out))
    reporter.update(RECORD.key, RECORD, state())
    reporter.send_pending()
    first = _lines(out)
    assert [(x.get("condition"), x.get("status"), x.get("transition")) for x in first] == [
        (health.CONDITION, "True", True)
    ]
    reporter.update(RECORD.key, RECORD, state())  # no change: nothing to send
    assert reporter.pending() == set()
    down = health.read(RECORD, links(active=3, net1={"carrier": False}))
    reporter.update(RECORD.key, RECORD, down)
    reporter.send_pending()
    assert [x.get("event") for x in _lines(out)[1:]] == [None, "BondFailedOver", "BondDegraded"]
    assert reporter.bonds()[0].failovers == 1

    # A new agent over the same folder: the bond is as last reported, so nothing is sent.
    again = io.StringIO()
    restarted = Reporter(str(tmp_path), LogSink(again))
    restarted.update(RECORD.key, RECORD, down)
    assert restarted.pending() == set()
    # It recovered while no agent ran: told once, as a recovery.
    restarted.update(RECORD.key, RECORD, state())
    restarted.send_pending()
    assert [x.get("event") for x in _lines(again)] == [None, "BondFailedOver", "BondRecovered"]
    assert _lines(again)[0]["status"] == "True"

    restarted.forget(RECORD.key)  # DEL: the saved state goes with the record
    assert not (tmp_path / ".agent" / RECORD.key).exists()


def test_a_failing_sink_keeps_the_change_pending(tmp_path: Path) -> None:
    class Refusing:
        calls = 0

        def report(self, pod: PodRef, condition: Condition, events: list[health.Signal]) -> None:
            self.calls += 1
            raise SinkError("apiserver unreachable")  # the fault a real outage would give

    sink = Refusing()
    reporter = Reporter(str(tmp_path), sink)
    reporter.update(RECORD.key, RECORD, state())
    assert reporter.send_pending() is True
    assert reporter.pending() == {RECORD.key}
    assert not (tmp_path / ".agent" / RECORD.key).exists()


def test_saved_states_of_records_gone_while_down_are_pruned(tmp_path: Path) -> None:
    (tmp_path / ".agent").mkdir()
    (tmp_path / ".agent" / "old_bond0.json").write_text("{}")
    reporter = Reporter(str(tmp_path), None)
    reporter.keep({RECORD.key})
    assert list((tmp_path / ".agent").iterdir()) == []
