"""Comparisons as ratios (ours / peer), and the text they are printed as."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """One measure of ours against one of the peer (a stand-in, named in `peer`)."""

    what: str
    ours: float
    peer: float
    unit: str
    peer_name: str
    better: str  # "higher" or "lower": which way is better for us
    target: float | None = None  # the ratio we aim for (e.g. 2.0: at most twice the peer's)

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = self.ratio >= self.target if self.better == "higher" else self.ratio <= self.target
        sign = ">=" if self.better == "higher" else "<="
        return f"target {sign} {self.target:g}x: {'met' if met else 'NOT met'}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Comparison]) -> str:
    head = f"{'measure':<44} {'ours':>11} {'peer':>11} {'ours/peer':>9}  notes"
    lines = [head, "-" * len(head)]
    for row in rows:
        notes = ", ".join(
            part
            for part in (f"{row.better} is better", f"peer: {row.peer_name}", row.verdict)
            if part
        )
        lines.append(
            f"{row.what:<44} {_num(row.ours, row.unit):>11} {_num(row.peer, row.unit):>11} "
            f"{row.ratio:>8.2f}x  {notes}"
        )
    return "\n".join(lines)


def _num(value: float, unit: str) -> str:
    return f"{value:.1f} {unit}" if value < 1000 else f"{value:.0f} {unit}"


def load_line() -> str:
    """The machine's load, to read the numbers with: `uptime`'s load averages and the cores."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 0
    return f"machine: {cores} cores, load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"
