"""A bond's health: read from its links, summed up, and what changed between two summaries.

Pure: links in, plain data out. The agent's watcher feeds it what the kernel says; the reporter
turns the differences into Kubernetes Events and the BondHealthy condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cni.core.records import Attachment
from cni.kernel.rtnl import MII_UP, Link

CONDITION = "bond-injector.io/BondHealthy"
HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"


@dataclass(frozen=True)
class Slave:
    name: str
    up: bool
    why: str  # "" when up; else what the kernel says is wrong with it


@dataclass(frozen=True)
class BondState:
    """One bond as the kernel shows it: each configured slave, and the active one."""

    bond: str
    present: bool
    slaves: tuple[Slave, ...]
    active: str | None = None

    @property
    def enslaved(self) -> int:
        if not self.present:
            return 0
        return sum(1 for s in self.slaves if s.why not in {"not in the bond", "missing"})

    @property
    def up(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slaves if s.up)

    def summary(self) -> Summary:
        down = tuple(f"{s.name} ({s.why})" for s in self.slaves if not s.up)
        if not self.present:
            level = DOWN
        elif not down:
            level = HEALTHY
        else:
            level = DEGRADED if self.up else DOWN
        return Summary(level, self.up, down, self.active, len(self.slaves), self.present)


def read(record: Attachment, links: Mapping[str, Link]) -> BondState:
    """The bond of `record` in a netns whose links are `links` (by name)."""
    bond = links.get(record.bond)
    if bond is None or bond.kind != "bond":
        return BondState(
            record.bond, False, tuple(Slave(n, False, "no bond") for n in record.slaves)
        )
    by_index = {link.index: link.name for link in links.values()}
    slaves = []
    for name in record.slaves:
        link = links.get(name)
        if link is None:
            slaves.append(Slave(name, False, "missing"))
        elif link.master != bond.index:
            slaves.append(Slave(name, False, "not in the bond"))
        elif not link.up:
            slaves.append(Slave(name, False, "link down"))
        elif not link.carrier:
            slaves.append(Slave(name, False, "no carrier"))
        elif link.slave.get("mii_status", MII_UP) != MII_UP:
            slaves.append(Slave(name, False, "link monitor says down"))
        else:
            slaves.append(Slave(name, True, ""))
    active = bond.bond.get("active_slave")
    return BondState(record.bond, True, tuple(slaves), by_index.get(active) if active else None)


@dataclass(frozen=True)
class Summary:
    """What the cluster is told about one bond; the agent persists the last one it sent."""

    level: str
    up: tuple[str, ...]
    down: tuple[str, ...]  # "net1 (no carrier)"
    active: str | None
    configured: int
    present: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "up": list(self.up),
            "down": list(self.down),
            "active": self.active,
            "configured": self.configured,
            "present": self.present,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Summary:
        active = doc.get("active")
        return cls(
            level=str(doc["level"]),
            up=tuple(str(x) for x in doc["up"]),
            down=tuple(str(x) for x in doc["down"]),
            active=str(active) if active is not None else None,
            configured=int(doc["configured"]),
            present=bool(doc.get("present", True)),
        )


@dataclass(frozen=True)
class Signal:
    """One Kubernetes Event: `kind` Normal or Warning, a CamelCase `reason`, a message."""

    kind: str
    reason: str
    message: str


def _count(s: Summary) -> str:
    return f"{len(s.up)} of {s.configured} slaves up"


def signals(bond: str, before: Summary | None, after: Summary) -> list[Signal]:
    """The Events that tell the change from `before` (None: never reported) to `after`."""
    found = []
    if before is not None and before.active and after.active and before.active != after.active:
        found.append(
            Signal(
                "Warning",
                "BondFailedOver",
                f"bond {bond} failed over from {before.active} to {after.active}"
                + (f"; down: {', '.join(after.down)}" if after.down else ""),
            )
        )
    changed = before is None or (before.level, before.down) != (after.level, after.down)
    if not changed:
        return found
    if after.level == DOWN:
        what = f"bond {bond} is missing" if not after.present else f"bond {bond} lost all legs"
        found.append(Signal("Warning", "BondDown", f"{what}: {', '.join(after.down)}"))
    elif after.level == DEGRADED:
        found.append(
            Signal(
                "Warning",
                "BondDegraded",
                f"bond {bond} degraded, {_count(after)}: down {', '.join(after.down)}; "
                f"up {', '.join(after.up)}",
            )
        )
    elif before is not None:
        active = f", active {after.active}" if after.active else ""
        found.append(
            Signal(
                "Normal",
                "BondRecovered",
                f"bond {bond} recovered: all {after.configured} slaves up ({', '.join(after.up)})"
                + active,
            )
        )
    return found


def condition(bond: str, summary: Summary) -> tuple[str, str, str]:
    """(status, reason, message) of the BondHealthy condition."""
    if summary.level == HEALTHY:
        active = f", active {summary.active}" if summary.active else ""
        return "True", "AllSlavesUp", f"bond {bond}: {_count(summary)}{active}"
    if summary.level == DEGRADED:
        return (
            "False",
            "SlavesDown",
            f"bond {bond}: {_count(summary)}; down {', '.join(summary.down)}",
        )
    if not summary.present:
        return "False", "BondMissing", f"bond {bond} is not in the pod"
    return "False", "AllSlavesDown", f"bond {bond}: no slave up; down {', '.join(summary.down)}"
