"""Run the real helper (`bin/bond serve`) and the real client (`bin/bond`) from tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.poll import poll

ROOT = Path(__file__).resolve().parents[2]
BOND = ROOT / "bin" / "bond"
# The plugin from this source tree, with its test-only fault points (cni.plugin.faults), which
# the built bin/bond leaves out.
FROM_SOURCE = (sys.executable, "-m", "cni")


@dataclass
class Helper:
    socket: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text()

    def served(self, command: str) -> int:
        """How many requests of `command` the helper has answered so far."""
        return sum(f": {command} " in line and "exit" in line for line in self.log().splitlines())

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextmanager
def running_helper(
    socket: Path,
    *args: str,
    user: Sequence[str] = (),
    start_timeout: float = 60,
    plugin: Sequence[str] = (str(BOND),),
) -> Iterator[Helper]:
    """`bin/bond serve` on `socket`, ready (a probe answered) before the body runs; stopped after.

    `user` prefixes the command (e.g. setpriv to run it as another uid, or `ip netns exec` to
    run it in a netns standing for the node's); `plugin` is what serves (FROM_SOURCE: the tree)."""
    log_path = socket.parent.parent / f"{socket.name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*user, *plugin, "serve", "--socket", str(socket), "--log-level", "DEBUG", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    helper = Helper(socket, log_path, proc)
    try:
        poll(
            lambda: proc.poll() is not None or "serving on" in helper.log(),
            timeout=start_timeout,
            what=f"helper on {socket}",
        )
        if proc.poll() is not None:
            raise AssertionError(f"helper exited {proc.returncode}: {helper.log()}")
        yield helper
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def call(
    command: str,
    stdin: bytes | Mapping[str, Any],
    env: Mapping[str, str],
    *,
    socket: Path | None = None,
    user: Sequence[str] = (),
    timeout: float = 120,
    plugin: Sequence[str] = (str(BOND),),
) -> tuple[int, bytes, str]:
    """One `bin/bond` call as a runtime makes it: through the helper at `socket`, or in process
    (BOND_CNI_HELPER=off) when socket is None. Returns (exit code, stdout, stderr). `plugin` is
    what runs (FROM_SOURCE: this tree's plugin in process; it never asks a helper)."""
    raw = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    full = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": command, **env}
    if socket is None:
        full["BOND_CNI_HELPER"] = "off"
    else:
        full["BOND_CNI_HELPER_SOCKET"] = str(socket)
    proc = subprocess.run(
        [*user, *plugin],
        input=raw,
        env=full,
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode()


GATE = "BOND_TEST_GATE"  # a FIFO: the gated IPAM waits until a test writes a line to it
GATE_ON = "BOND_TEST_GATE_ON"  # the CNI command it waits on (ADD, DEL, ...)
GATED_IPAM = "gated-host-local"
# The helper's own IPAM allowlist in these tests: its default, and the gated one.
IPAM_PLUGINS = "host-local,static,dhcp,whereabouts," + GATED_IPAM


def gate_args(gate: Path, on: str) -> dict[str, str]:
    """The call's CNI_ARGS that make gated-host-local wait at `gate` during `on`. In CNI_ARGS
    because an IPAM plugin gets the CNI variables only (host-local ignores the keys it does not
    know with IgnoreUnknown)."""
    return {"CNI_ARGS": f"IgnoreUnknown=1;{GATE}={gate};{GATE_ON}={on}"}


def gated_ipam(directory: Path) -> Path:
    """A CNI bin dir holding `gated-host-local`: Debian's real host-local, which then, for the
    command named by BOND_TEST_GATE_ON in the call's CNI_ARGS, waits at the FIFO named by
    BOND_TEST_GATE there until a test writes to it. A real IPAM plugin that hangs exactly where a
    test wants, after it allocated or released (stand-in: no real IPAM hangs on demand). A test
    knows it is there when its own open of the FIFO for writing returns."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / GATED_IPAM
    script.write_text(
        "#!/bin/sh\n"
        "out=$(/usr/lib/cni/host-local); rc=$?\n"
        "gate=; on=\n"
        "IFS=';'\n"
        "for pair in $CNI_ARGS; do\n"
        "    case $pair in\n"
        f"        {GATE}=*) gate=${{pair#*=}} ;;\n"
        f"        {GATE_ON}=*) on=${{pair#*=}} ;;\n"
        "    esac\n"
        "done\n"
        'if [ -n "$gate" ] && [ "$CNI_COMMAND" = "$on" ]; then\n'
        '    read -r _ < "$gate"\n'
        "fi\n"
        "printf '%s\\n' \"$out\"\n"
        "exit $rc\n"
    )
    script.chmod(0o755)
    return directory


def processes_naming(path: Path) -> list[int]:
    """Pids of processes whose command line names `path` (an executable or a socket)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(path).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return found
