"""bin/bond's ADD+DEL against bond-cni, in one VM; start-up and DEL on the host.

bond-cni is built from its source tarball (bench/peers.py). Both get the same configuration
(bond-cni's README one: active-backup, miimon 100, failOverMac 1, plus host-local IPAM) and the
same two veth legs in a pod netns. The host has no bonding module, so both run inside one VM
(tests.rigs.vm) that bench/cni_vm.sh drives.

bin/bond is measured both ways a node can run it: through its warm helper (`bond serve`, what
the chart deploys) and in process (BOND_CNI_HELPER=off, what a node without the helper gets).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.peers import BOND_CNI, peer_binary
from bench.report import Comparison, median
from tests.cni.helper_rig import running_helper
from tests.rigs.vm import run_in_vm

REPO = Path(__file__).resolve().parent.parent
BOND = REPO / "bin" / "bond"
PEER = "bond-cni"
HELPER_TARGET = 1.0  # the issue's: ADD+DEL through the helper at most bond-cni's
IN_PROCESS_TARGET = 2.0  # and in process at most twice it
PLUGINS = ("helper", "bond", "bondcni")  # bin/bond through its helper, in process; bond-cni


def run(iterations: int) -> list[Comparison]:
    if not os.access(BOND, os.X_OK):
        raise RuntimeError(f"{BOND} is missing; run `make build`")
    peer = peer_binary(BOND_CNI)
    rows = _host_version(peer, iterations)
    rows += _in_vm(peer, iterations)
    return rows


@contextmanager
def _host_helper() -> Iterator[Path]:
    """`bin/bond serve` on a private socket of this host (at the default log level), warm before
    it is yielded; the tests' own rig starts and stops it."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-helper-") as tmp,
        running_helper(
            Path(tmp) / "run" / "helper.sock", "--log-level", "INFO", "--cni-path", "/usr/lib/cni"
        ) as helper,
    ):
        # bin/bond execs bond-plugin in place, so this pid is the helper's own process.
        status = Path(f"/proc/{helper.proc.pid}/status").read_text()
        rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        print(f"  host helper resident memory: {int(rss) / 1024:.1f} MiB (one process a node)")
        yield helper.socket


def _host_version(peer_bin: Path, iterations: int) -> list[Comparison]:
    """On the host, without 9p or TCG in the way: VERSION (start-up and hand-over alone), and a
    DEL with nothing to tear down in its netns but a host-local lease (no bonding module here,
    so no ADD: this is the one real-hardware figure that includes netlink and IPAM)."""
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp, _netns("bench-host-del") as ns:
        ipam = {"type": "host-local", "subnet": "192.0.2.0/24", "dataDir": f"{tmp}/ipam"}
        confs = {
            name: {  # bond-cni's README configuration (it checks the mode even on DEL)
                "cniVersion": "1.0.0",
                "name": "hb",
                "type": "bond",
                "mode": "active-backup",
                "miimon": "100",
                "mtu": 1500,
                "failOverMac": 1,
                "linksInContainer": True,
                "ipam": ipam,
                "links": [{"name": "net1"}, {"name": "net2"}],
            }
            for name in ("bond", "bondcni")
        }
        for name, conf in confs.items():
            Path(tmp, f"{name}.json").write_text(json.dumps(conf))
        dels = {
            "CNI_CONTAINERID": "bench",
            "CNI_NETNS": f"/run/netns/{ns}",
            "CNI_IFNAME": "eth9",
            "CNI_PATH": "/usr/lib/cni",
        }
        off = {"BOND_CNI_HELPER": "off"}
        peer = median(_times(peer_bin, iterations, {}, "VERSION", "/dev/null"))
        peer_del = median(_times(peer_bin, iterations, dels, "DEL", f"{tmp}/bondcni.json"))
        alone = median(_times(BOND, iterations, off, "VERSION", "/dev/null"))
        alone_del = median(_times(BOND, iterations, {**dels, **off}, "DEL", f"{tmp}/bond.json"))
        with _host_helper() as sock:
            via = {"BOND_CNI_HELPER_SOCKET": str(sock)}
            warm = median(_times(BOND, iterations, via, "VERSION", "/dev/null"))
            warm_del = median(_times(BOND, iterations, {**dels, **via}, "DEL", f"{tmp}/bond.json"))
    print(
        f"  host VERSION: bin/bond through its helper {warm:.1f} ms, in process {alone:.1f} ms, "
        f"bond-cni {peer:.1f} ms (medians)\n"
        f"  host DEL (nothing to tear down, host-local release): through the helper "
        f"{warm_del:.1f} ms, in process {alone_del:.1f} ms, bond-cni {peer_del:.1f} ms (medians)"
    )

    def row(what: str, ours: float, theirs: float) -> Comparison:
        return Comparison(what, ours, theirs, "ms", PEER, "lower")

    return [
        row("CNI VERSION through the helper (host)", warm, peer),
        row("CNI DEL through the helper (host)", warm_del, peer_del),
        row("CNI VERSION in process (host)", alone, peer),
        row("CNI DEL in process (host)", alone_del, peer_del),
    ]


@contextmanager
def _netns(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# The same clock as in the VM (bash's $EPOCHREALTIME around one exec), so that the spawn cost of
# the timing harness is bash's fork+exec in both places, not Python's subprocess.
_LOOP = """
CNI_COMMAND=$3 "$1" <"$4" >/dev/null
for ((i = 0; i < $2; i++)); do
  t0=${EPOCHREALTIME/./}
  CNI_COMMAND=$3 "$1" <"$4" >/dev/null || exit 1
  t1=${EPOCHREALTIME/./}
  echo $((t1 - t0))
done
"""


def _times(
    binary: Path, iterations: int, env: Mapping[str, str], command: str, stdin: str
) -> list[float]:
    """Milliseconds of 2N calls after one untimed call (cheap here: twice the VM's N)."""
    done = subprocess.run(
        ["bash", "-c", _LOOP, "bench", str(binary), str(2 * iterations), command, stdin],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.defpath, **env},
    )
    return [int(line) / 1000 for line in done.stdout.split()]


def _in_vm(peer_bin: Path, iterations: int) -> list[Comparison]:
    log = REPO / ".cache" / "bench" / "cni-vm.log"
    run_ = run_in_vm(
        f"bash bench/cni_vm.sh {int(iterations)} {shlex.quote(str(peer_bin))}"
        f"; bash bench/cni_cases_vm.sh {shlex.quote(str(peer_bin))}"
        f"; bash bench/failover_vm.sh {shlex.quote(str(peer_bin))}",
        rwdir=REPO,
        timeout=600 + 60 * iterations,
        log=log,
    )
    times = _parse(run_.output)
    for part in ("cases", "failover"):
        if f"bench: {part} done" not in run_.output:
            print(f"  WARNING: the VM's {part} script did not finish; log {log}")
    if "bench: done" not in run_.output:
        tail = run_.output[-3000:]
        raise RuntimeError(
            f"the CNI benchmark VM failed (exit {run_.returncode}), log {log}:\n{tail}"
        )
    print(f"  VM: booted, ran and stopped in {run_.seconds:.0f} s (TCG, no KVM); log {log}")
    print(cases_table(parse_cases(run_.output)))
    med = {key: median(values) / 1000 for key, values in times.items()}  # microseconds -> ms
    for line in run_.output.splitlines():
        if line.startswith("bench: the helper"):
            print(f"  {line[7:]}")
    for plugin in PLUGINS:
        print(
            f"  {plugin:<7} ADD {med[plugin, 'ADD']:7.1f} ms  DEL {med[plugin, 'DEL']:7.1f} ms  "
            f"VERSION {med[plugin, 'VERSION']:7.1f} ms  (medians of {len(times[plugin, 'ADD'])})"
        )
    pairs = {
        plugin: median(
            [a + d for a, d in zip(times[plugin, "ADD"], times[plugin, "DEL"], strict=True)]
        )
        / 1000
        for plugin in PLUGINS
    }

    def row(what: str, ours: float, peer: float, target: float | None = None) -> Comparison:
        return Comparison(what, ours, peer, "ms", PEER, "lower", target)

    peer = "bondcni"
    return [
        *failover_rows(parse_failover(run_.output)),
        row("CNI ADD+DEL, helper (VM)", pairs["helper"], pairs[peer], HELPER_TARGET),
        row("CNI ADD, helper (VM)", med["helper", "ADD"], med[peer, "ADD"]),
        row("CNI DEL, helper (VM)", med["helper", "DEL"], med[peer, "DEL"]),
        row("CNI VERSION, helper (VM)", med["helper", "VERSION"], med[peer, "VERSION"]),
        row("CNI ADD+DEL, in process (VM)", pairs["bond"], pairs[peer], IN_PROCESS_TARGET),
        row("CNI ADD, in process (VM)", med["bond", "ADD"], med[peer, "ADD"]),
        row("CNI DEL, in process (VM)", med["bond", "DEL"], med[peer, "DEL"]),
        row("CNI VERSION, in process (VM)", med["bond", "VERSION"], med[peer, "VERSION"]),
    ]


def _parse(output: str) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "time":
            times[parts[1], parts[2]].append(float(parts[3]))
    return times


@dataclass(frozen=True)
class CaseResult:
    exits: str  # the exit codes of the case's steps, comma separated
    code: str  # the CNI error code of the last step, or "-"
    message: str
    left_behind: str


def parse_cases(output: str) -> dict[str, dict[str, CaseResult]]:
    """`case|<case>|<plugin>|<exits>|<code>|<message>|<left behind>` lines, by case and plugin."""
    cases: dict[str, dict[str, CaseResult]] = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 7 and parts[0] == "case":
            cases.setdefault(parts[1], {})[parts[2]] = CaseResult(*parts[3:])
    return cases


def cases_table(cases: dict[str, dict[str, CaseResult]]) -> str:
    """A Markdown table: each case through both plugins, and whether they differ."""
    lines = [
        "| case | bin/bond (helper): exits, code, left behind | bond-cni: exits, code, left"
        " behind | differs in |",
        "|---|---|---|---|",
    ]
    for name, by_plugin in cases.items():
        ours, peer = by_plugin.get("helper"), by_plugin.get("bondcni")
        if ours is None or peer is None:
            continue
        differs = [
            field
            for field in ("exits", "code", "left_behind")
            if getattr(ours, field) != getattr(peer, field)
        ]
        lines.append(f"| {name} | {_cell(ours)} | {_cell(peer)} | {', '.join(differs) or '-'} |")
    return "\n".join(lines)


def _cell(result: CaseResult) -> str:
    message = result.message.replace("|", "/")
    return f"exit {result.exits}, code {result.code}, left {result.left_behind}: {message}"


PING_INTERVAL_MS = 10.0  # failover_vm.sh's ping -i 0.01


@dataclass(frozen=True)
class Failover:
    sent: int
    received: int
    active_before: str
    active_after: str

    @property
    def lost(self) -> int:
        return self.sent - self.received


def parse_failover(output: str) -> dict[tuple[str, int], Failover]:
    """`failover <plugin> <miimon> <sent> <received> <active before> <active after>` lines."""
    found: dict[tuple[str, int], Failover] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0] == "failover" and parts[3].isdigit():
            found[parts[1], int(parts[2])] = Failover(int(parts[3]), int(parts[4]), *parts[5:])
    return found


def failover_rows(found: dict[tuple[str, int], Failover]) -> list[Comparison]:
    rows = []
    for miimon in sorted({m for _, m in found}, reverse=True):
        ours, peer = found.get(("helper", miimon)), found.get(("bondcni", miimon))
        if ours is None or peer is None:
            continue
        budget = max(1.0, miimon / PING_INTERVAL_MS)  # one monitor interval's worth of pings
        for name, result in (("bin/bond", ours), ("bond-cni", peer)):
            print(
                f"  failover miimon {miimon}: {name:<8} lost {result.lost} of {result.sent} "
                f"pings at 10 ms (one interval's worth: {budget:g}), active "
                f"{result.active_before} -> {result.active_after}"
            )
        rows.append(
            Comparison(
                f"failover loss, miimon {miimon} (pings)",
                ours.lost,
                peer.lost,
                "pkts",
                f"bond-cni; budget {budget:g}",
                "lower",
            )
        )
    return rows
