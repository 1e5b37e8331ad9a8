"""The inner (in-VM) side of the kernel tier: each test's reports, written to one JSON file.

The file, read back by kernel_plugin.py in the outer run:
    {"exitstatus": int, "uptime": {"configured"|"collected"|"finished": guest seconds},
     "tests": {nodeid: {"setup"|"call"|"teardown": {"outcome", "longrepr", "duration", "sections",
                                                  optional "skip", "wasxfail", "crash"}}},
     "collect_errors": [{"nodeid", "longrepr"}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation


def uptime() -> float | None:
    """Seconds since the (guest) kernel booted."""
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(eq=False)  # pluggy keeps plugins in sets: hash by identity
class Recorder:
    """Registered by the plugin in the inner run; writes the results file at the end."""

    path: Path
    tests: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    collect_errors: list[dict[str, str]] = field(default_factory=list)
    uptimes: dict[str, float | None] = field(default_factory=dict)

    def pytest_collection_finish(self) -> None:
        self.uptimes["collected"] = uptime()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry: dict[str, Any] = {
            "outcome": report.outcome,
            "longrepr": report.longreprtext,
            "duration": report.duration,
            "sections": [list(s) for s in report.sections],
        }
        if report.skipped and isinstance(report.longrepr, tuple):
            entry["skip"] = [str(report.longrepr[0]), report.longrepr[1], report.longrepr[2]]
        if hasattr(report, "wasxfail"):
            entry["wasxfail"] = report.wasxfail
        crash = getattr(report.longrepr, "reprcrash", None)
        if isinstance(crash, ReprFileLocation):
            entry["crash"] = [crash.path, crash.lineno, crash.message]
        self.tests.setdefault(report.nodeid, {})[report.when] = entry

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append({"nodeid": report.nodeid, "longrepr": report.longreprtext})

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self.uptimes["finished"] = uptime()
        document = {
            "exitstatus": int(exitstatus),
            "uptime": self.uptimes,
            "tests": self.tests,
            "collect_errors": self.collect_errors,
        }
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(document))
        partial.replace(self.path)
