"""Prometheus metrics of one app instance, in its own registry (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

OUTCOMES = (
    "patched", "unchanged", "skipped", "ignored", "denied", "invalid", "overloaded", "error",
)  # fmt: skip
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector(Collector):
    """Gauges read at scrape time from the live objects."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, float | None]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (doc, value) in self._read().items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self, state: Callable[[], dict[str, tuple[str, float | None]]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "bond_injector_admission_requests",
            "Admission requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        # Bound children: the hot path does no label lookup.
        self.requests = {outcome: requests.labels(outcome) for outcome in OUTCOMES}
        self.latency = Histogram(
            "bond_injector_admission_duration_seconds",
            "Time from request to response of /mutate",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.nad_fetches = Counter(
            "bond_injector_nad_api_fetches",
            "NADs fetched from the API server because the cache did not have them",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def observe(self, outcome: str, seconds: float) -> None:
        self.requests[outcome].inc()
        self.latency.observe(seconds)
