"""Kernel tier: every `kernel` test runs inside ONE VM per pytest run, reported under its own name.

Outer run (the host, BOND_INJECTOR_IN_VM unset): each selected `kernel` test is replaced by a
`KernelTestProxy` with the same node ID. The first proxy to run boots one VM (tests/rigs/vm.py) that
runs an inner `pytest -m kernel` on exactly the selected node IDs; the inner run writes each test's
reports to a JSON file in the project dir, which the VM can write (kernel_inner.py). Each proxy then
reports its inner test's setup/call/teardown outcome, failure text, skip reason and duration as its
own, so an inner failure fails the outer run. No result (VM did not boot, inner run crashed) fails
the proxy. A test's skip/skipif/xfail marks are evaluated inside only.

Inner run (BOND_INJECTOR_IN_VM=1): `kernel` tests run normally, with the fixtures of netns.py
(`pod_net`, `bonding`), which this plugin exposes to every test. Installed pytest plugins are not
auto-loaded there (each costs seconds under TCG), and the cluster rig's plugin is blocked.

BOND_INJECTOR_KERNEL_RUNNER=host runs the inner pytest on the host instead of in a VM, for hosts
whose own kernel can bond (and for the rig's own test of the outer/inner mapping).
BOND_INJECTOR_VM_TIMEOUT (seconds, default 4200) bounds the whole VM run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr
from _pytest._io import TerminalWriter

from tests.rigs import vm
from tests.rigs.kernel_inner import Recorder, uptime
from tests.rigs.netns import bonding, pod_net

__all__ = ["KernelTestProxy", "bonding", "pod_net"]  # the fixtures every test can request

IN_VM = "BOND_INJECTOR_IN_VM"
RESULTS = "BOND_INJECTOR_KERNEL_RESULTS"
RUNNER = "BOND_INJECTOR_KERNEL_RUNNER"
TIMEOUT = "BOND_INJECTOR_VM_TIMEOUT"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # holds the `tests` package
# Marks the outer run must not evaluate itself: the inner run does, where the test really runs.
_TAIL = 4000  # characters of the VM's output quoted in a failure
_INNER_ONLY_MARKS = frozenset({"skip", "skipif", "xfail", "usefixtures", "parametrize"})


def _in_vm() -> bool:
    return os.environ.get(IN_VM) == "1"


# ---------------------------------------------------------------------------------------------
# Outer run: one VM for all selected kernel tests, then one proxy per test.


@dataclass
class _KernelRun:
    """The one VM run of this session; `error` set when there are no usable results."""

    results: dict[str, Any] | None = None
    error: str | None = None
    summary: str | None = None
    output_tail: str = ""


_kernel_run_key = pytest.StashKey[_KernelRun]()


class InnerFailureRepr(TerminalRepr):
    """A failure's text as the inner run rendered it, with its one-line crash message."""

    def __init__(self, text: str, crash: ReprFileLocation) -> None:
        self.text = text
        self.reprcrash = crash  # what the short summary and junitxml show

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.splitlines():
            tw.line(line)


class KernelRigError(Exception):
    """The VM or the inner run failed; the message says how and where the log is."""


class KernelTestProxy(pytest.Item):
    """Stands for a `kernel` test in the outer run; its outcome is that of the inner run."""

    location_of_test: tuple[os.PathLike[str] | str, int | None, str] = ("", None, "")

    def setup(self) -> None:
        _ensure_kernel_run(self.session)

    def runtest(self) -> None:
        kernel_run = self.config.stash[_kernel_run_key]
        if kernel_run.error is not None:
            raise KernelRigError(kernel_run.error)
        if _inner_phase(self, "call") is None:
            raise KernelRigError(_missing_result(self.nodeid, kernel_run))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, KernelRigError):
            text = str(excinfo.value)
            path, lineno, _ = self.location
            return InnerFailureRepr(text, ReprFileLocation(path, lineno or 0, text))
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.location_of_test


def _inner_phase(item: pytest.Item, when: str) -> dict[str, Any] | None:
    kernel_run = item.config.stash.get(_kernel_run_key, None)
    if kernel_run is None or kernel_run.results is None:
        return None
    phase: dict[str, Any] | None = kernel_run.results["tests"].get(item.nodeid, {}).get(when)
    return phase


def _missing_result(nodeid: str, kernel_run: _KernelRun) -> str:
    assert kernel_run.results is not None
    errors = "\n".join(
        f"{e['nodeid']}:\n{e['longrepr']}" for e in kernel_run.results["collect_errors"]
    )
    return (
        f"the inner run (exit {kernel_run.results['exitstatus']}) has no result for {nodeid}"
        + (f"; its collection errors:\n{errors}" if errors else "")
        + f"\nthe end of its output:\n{kernel_run.output_tail}"
    )


def _selected_kernel_nodeids(session: pytest.Session) -> list[str]:
    return [item.nodeid for item in session.items if isinstance(item, KernelTestProxy)]


def _inner_command(config: pytest.Config, nodeids: list[str], rig_dir: Path) -> str:
    args_file = rig_dir / "nodeids.txt"
    args_file.write_text("".join(f"{nodeid}\n" for nodeid in nodeids))
    results = rig_dir / "results.json"
    results.unlink(missing_ok=True)
    env = {IN_VM: "1", RESULTS: str(results), "PYTHONPATH": str(_PROJECT_ROOT)}
    # Scanning every installed distribution for plugins reads hundreds of files over 9p; a kernel
    # test that needs an installed plugin names it with `-p` in its own conftest instead.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    argv = [sys.executable, "-m", "pytest", "-p", "tests.rigs.kernel_plugin"]
    # The cluster rig has no business in the VM, and its imports cost seconds there.
    argv += ["-p", "no:tests.rigs.cluster_plugin", "-p", "no:cacheprovider"]
    argv += ["--rootdir", str(config.rootpath), "-m", "kernel", "-v", "-rA"]
    if config.inipath is not None:
        argv += ["-c", str(config.inipath)]
    argv.append(f"@{args_file}")
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (
        "echo bond-injector-uptime-at-command $(cut -d' ' -f1 /proc/uptime); "
        f"exec env {assignments} {shlex.join(argv)}"
    )


def _rig_dir(config: pytest.Config) -> Path:
    """This run's own folder in the VM's writable dir: runs in one tree may overlap."""
    rig_dir = config.rootpath / ".cache" / "kernel-rig" / f"run-{os.getpid()}"
    rig_dir.mkdir(parents=True, exist_ok=True)
    return rig_dir


def _prune_old_runs(rig_dir: Path, max_age: float = 86400) -> None:
    for old in rig_dir.parent.glob("run-*"):
        if old != rig_dir and time.time() - old.stat().st_mtime > max_age:
            shutil.rmtree(old, ignore_errors=True)


def _ensure_kernel_run(session: pytest.Session) -> _KernelRun:
    config = session.config
    if _kernel_run_key in config.stash:
        return config.stash[_kernel_run_key]
    kernel_run = config.stash[_kernel_run_key] = _KernelRun()
    rig_dir = _rig_dir(config)
    _prune_old_runs(rig_dir)
    nodeids = _selected_kernel_nodeids(session)
    command = _inner_command(config, nodeids, rig_dir)
    log = rig_dir / "vm.log"
    timeout = float(os.environ.get(TIMEOUT, "4200"))
    runner = os.environ.get(RUNNER, "vm")
    _tell(config, f"kernel rig: one {runner} run for {len(nodeids)} kernel tests; `tail -f {log}`")
    started = time.monotonic()
    try:
        if runner == "host":
            done = vm.run_on_host(command, cwd=config.rootpath, timeout=timeout, log=log)
        else:
            done = vm.run_in_vm(command, rwdir=config.rootpath, timeout=timeout, log=log)
    except vm.VmError as e:
        kernel_run.error = f"kernel VM failed: {e}"
        return kernel_run
    results_path = rig_dir / "results.json"
    if not results_path.exists():
        kernel_run.error = (
            f"the inner pytest wrote no {results_path} (exit {done.returncode}); "
            f"log {log}, its end:\n{done.output[-_TAIL:]}"
        )
        return kernel_run
    kernel_run.results = json.loads(results_path.read_text())
    kernel_run.output_tail = done.output[-_TAIL:]
    kernel_run.summary = _timings(runner, done, kernel_run.results, time.monotonic() - started)
    return kernel_run


def _tell(config: pytest.Config, line: str) -> None:
    """A line on the terminal now: the VM takes minutes, and output capture would hide it."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def _timings(runner: str, done: vm.VmRun, results: dict[str, Any], total: float) -> str:
    at_command: float | None = None
    for line in done.output.splitlines():
        if line.startswith("bond-injector-uptime-at-command "):
            at_command = float(line.split()[1])
    up = results["uptime"]
    parts = [f"{runner} run {total:.1f} s"]
    if runner == "vm" and at_command is not None:
        parts.append(f"boot {at_command:.1f} s")
    if at_command is not None and up.get("configured") is not None:
        parts.append(f"inner pytest start-up {up['configured'] - at_command:.1f} s")
    if up.get("configured") is not None and up.get("collected") is not None:
        parts.append(f"collection {up['collected'] - up['configured']:.1f} s")
    if up.get("collected") is not None and up.get("finished") is not None:
        parts.append(f"tests {up['finished'] - up['collected']:.1f} s")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Hooks.


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: runs inside the kernel VM (see tests/rigs/)")
    if _in_vm() and os.environ.get(RESULTS):
        recorder = Recorder(Path(os.environ[RESULTS]), uptimes={"configured": uptime()})
        config.pluginmanager.register(recorder, "kernel-rig-recorder")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _in_vm():
        # Never run cluster tests in the VM, even if named explicitly.
        cluster = [item for item in items if item.get_closest_marker("cluster") is not None]
        if cluster:
            config.hook.pytest_deselected(items=cluster)
            items[:] = [item for item in items if item not in cluster]
        return
    for index, item in enumerate(items):
        if item.get_closest_marker("kernel") is None or isinstance(item, KernelTestProxy):
            continue
        assert item.parent is not None
        proxy = KernelTestProxy.from_parent(item.parent, name=item.name)
        proxy.location_of_test = item.reportinfo()
        for mark in item.own_markers:
            if mark.name not in _INNER_ONLY_MARKS:
                proxy.add_marker(
                    getattr(pytest.mark, mark.name).with_args(*mark.args, **mark.kwargs)
                )
        items[index] = proxy


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not isinstance(item, KernelTestProxy):
        return report
    inner = _inner_phase(item, call.when)
    if inner is None:
        return report
    report.outcome = inner["outcome"]
    report.duration = inner["duration"]
    report.sections = [(title, content) for title, content in inner["sections"]]
    if inner["outcome"] == "passed":
        report.longrepr = None
    elif "skip" in inner:
        path, lineno, reason = inner["skip"]
        report.longrepr = (path, lineno, reason)
    else:
        path, lineno, message = inner.get("crash") or [item.location[0], 0, inner["longrepr"]]
        report.longrepr = InnerFailureRepr(
            inner["longrepr"], ReprFileLocation(path, lineno, message)
        )
    if "wasxfail" in inner:
        report.wasxfail = inner["wasxfail"]
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    kernel_run = config.stash.get(_kernel_run_key, None)
    if kernel_run is None:
        return
    log = _rig_dir(config) / "vm.log"
    line = kernel_run.summary or "failed, see the kernel tests' errors"
    terminalreporter.write_sep("-", "kernel rig")
    terminalreporter.write_line(f"kernel rig: {line}; log {log}")
