"""The agent's Prometheus metrics, read from the reporter's bonds at each scrape.

prometheus_client (pure Python, already the webhook's) serves them: it adds well under a
megabyte to the node bundle. A collector built per scrape means a bond whose record went has no
series left behind.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from cni.agent.report import Reporter

LABELS = ["namespace", "pod", "bond"]


class BondCollector(Collector):
    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        slaves = GaugeMetricFamily("bond_slaves", "Slaves enslaved to the bond", labels=LABELS)
        up = GaugeMetricFamily(
            "bond_slaves_up", "Slaves of the bond whose link is up", labels=LABELS
        )
        degraded = GaugeMetricFamily(
            "bond_degraded", "1 when a configured slave of the bond is not up", labels=LABELS
        )
        active = InfoMetricFamily(
            "bond_active_slave", "The bond's active slave (active-backup, tlb, alb)", labels=LABELS
        )
        failovers = CounterMetricFamily(
            "bond_failovers", "Active slave changes seen since the agent started", labels=LABELS
        )
        for bond in self._reporter.bonds():
            record, state = bond.record, bond.state
            labels = [record.pod_namespace, record.pod_name, record.bond]
            slaves.add_metric(labels, state.enslaved)
            up.add_metric(labels, len(state.up))
            degraded.add_metric(labels, 0 if state.summary().level == "healthy" else 1)
            if state.active:
                active.add_metric(labels, {"slave": state.active})
            failovers.add_metric(labels, bond.failovers)
        yield from (slaves, up, degraded, active, failovers)


def serve(reporter: Reporter, address: str, port: int) -> None:
    """Serve /metrics on a daemon thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BondCollector(reporter))
    start_http_server(port, addr=address, registry=registry)
