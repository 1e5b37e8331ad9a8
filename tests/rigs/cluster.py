"""A real local control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler.

No kubelet and no container runtime: pods are stored and scheduled (onto Node objects a test
creates), never run. Everything listens on 127.0.0.1 on free ports, so two clusters can coexist.

    python -m tests.rigs.cluster up [--dir DIR]     # kubeconfig in DIR/kubeconfig
    python -m tests.rigs.cluster down [--dir DIR]   # stops every process, removes DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from tests.poll import poll
from tests.rigs.cluster_config import (
    apiserver_args,
    controller_manager_args,
    etcd_args,
    kubeconfig,
    scheduler_args,
)
from tests.rigs.cluster_pki import ClusterPki, generate_pki
from tests.rigs.cluster_procs import (
    ClusterError,
    free_port,
    http_ok,
    pid_alive,
    port_open,
    terminate_group,
)

# Re-exported for tests and the pytest plugin.
__all__ = [
    "COMPONENTS",
    "REPO",
    "Cluster",
    "ClusterError",
    "find_binaries",
    "pid_alive",
    "port_open",
]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / ".cluster"
MANIFESTS = Path(__file__).resolve().parent / "manifests"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
)
# The processes in start order; they are stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
_STATE_FILE = "processes.json"


def bin_dir() -> Path:
    """Where `make deps` puts the binaries ($BOND_INJECTOR_CACHE/bin)."""
    return Path(os.environ.get("BOND_INJECTOR_CACHE", REPO / ".cache")) / "bin"


def find_binaries(directory: Path | None = None) -> dict[str, Path]:
    """Every binary the rig needs, or a ClusterError naming the missing ones and the fix."""
    directory = directory or bin_dir()
    found = {name: directory / name for name in BINARIES}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ClusterError(
            f"the cluster rig needs {', '.join(missing)} in {directory}; run `make deps`"
            " (tools/get-kubectl-helm.sh and tools/build-go-tools.sh build and cache them)"
        )
    return found


@dataclass(frozen=True)
class _Process:
    name: str
    pid: int
    exe: str  # checked against /proc/<pid>/exe before a later `down` signals the group
    log: str


def _write_private(path: Path, text: str) -> None:
    """Write a file that embeds a private key, readable by its owner only."""
    path.touch(mode=0o600)
    path.write_text(text)


class Cluster:
    """One local control plane whose state (PKI, etcd data, logs, kubeconfig) lives in `state_dir`.

    `start()` / `stop()` (or `with Cluster(dir) as c:`) own the processes; `Cluster.attach()`
    wraps a control plane started elsewhere (stop() then does nothing).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        binaries: dict[str, Path] | None = None,
        die_with_parent: bool = False,
        extra_ips: tuple[str, ...] = (),
        extra_clients: dict[str, tuple[str, str | None]] | None = None,
        extra_args: dict[str, list[str]] | None = None,
    ) -> None:
        """`die_with_parent`: the processes get SIGKILL when the thread that started them exits,
        so a test run killed hard (CI timeout, SIGKILL) leaves nothing behind either.

        `extra_ips` and `extra_clients` go to generate_pki (a node's view of the apiserver, its
        kubelet's identity); `extra_args` maps a component to flags appended to its own (a
        repeated flag's last value wins), e.g. the node rig's advertise address and egress.
        """
        self.state_dir = state_dir.resolve()
        self._die_with_parent = die_with_parent
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.ca_file = self.state_dir / "pki" / "ca.crt"
        self.server = ""
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self._binaries = binaries
        self._owned = True
        self._popen: dict[str, subprocess.Popen[bytes]] = {}
        self._extra_ips = extra_ips
        self._extra_clients = extra_clients
        self._extra_args = extra_args or {}

    # --- clients ---------------------------------------------------------------------------

    @property
    def binaries(self) -> dict[str, Path]:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with check=True a failure raises and shows stderr."""
        return self._run("kubectl", ["--kubeconfig", str(self.kubeconfig), *args], input, check)

    def helm(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster, with helm's own cache/config kept in the state dir."""
        return self._run("helm", ["--kubeconfig", str(self.kubeconfig), *args], input, check)

    def _run(
        self, tool: str, args: list[str], input: str | None, check: bool
    ) -> subprocess.CompletedProcess[str]:
        helm_home = self.state_dir / "helm"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
        }
        result = subprocess.run(
            [str(self.binaries[tool]), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"`{tool} {' '.join(args)}` exited {result.returncode}:\n{result.stderr.strip()}"
            )
        return result

    def create_namespace(self, name: str, *, timeout: float = 60) -> None:
        """Create a namespace and wait until its default ServiceAccount exists (pods need it)."""
        self.kubectl("create", "namespace", name)
        self.wait_for_default_service_account(name, timeout=timeout)

    def wait_for_default_service_account(self, namespace: str, *, timeout: float = 60) -> None:
        """Pods are refused until kube-controller-manager has made the namespace's `default`
        ServiceAccount; right after start-up even `default/default` may not exist yet."""
        poll(
            lambda: (
                self.kubectl(
                    "-n", namespace, "get", "serviceaccount", "default", check=False
                ).returncode
                == 0
            ),
            timeout=timeout,
            what=f"serviceaccount {namespace}/default (made by kube-controller-manager)",
            interval=0.2,
            error=ClusterError,
        )

    def add_node(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        allocatable: dict[str, str] | None = None,
    ) -> None:
        """Register a Ready Node (no kubelet behind it) that the scheduler can bind pods to.

        `allocatable` adds to cpu/memory/pods, e.g. {"intel.com/pf_a": "8"} for VF pools.
        """
        resources = {"cpu": "8", "memory": "16Gi", "pods": "110", **(allocatable or {})}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(node))
        # Status is a subresource that create/apply ignore: patch it in, as a kubelet would.
        status = {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            }
        }
        self.kubectl(
            "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
        )

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def attach(
        cls, kubeconfig: Path, state_dir: Path, *, binaries: dict[str, Path] | None = None
    ) -> Cluster:
        """Wrap a running control plane; its CA is written to `state_dir` when embedded."""
        cluster = cls(state_dir, binaries=binaries)
        cluster._owned = False
        cluster.kubeconfig = kubeconfig.resolve()
        config = yaml.safe_load(kubeconfig.read_text())
        current = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        entry = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        cluster.server = entry["server"]
        if "certificate-authority-data" in entry:
            state_dir.mkdir(parents=True, exist_ok=True)
            cluster.ca_file = state_dir / "ca.crt"
            cluster.ca_file.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
        else:
            cluster.ca_file = (kubeconfig.parent / entry["certificate-authority"]).resolve()
        cluster.kubectl("get", "--raw", "/readyz")
        return cluster

    def start(self, timeout: float = 180) -> None:
        """Start all four processes, wait until each is ready and apply the base manifests.

        On any failure everything started so far is stopped again before the error propagates.
        """
        binaries = self.binaries
        if (self.state_dir / _STATE_FILE).exists():
            raise ClusterError(f"{self.state_dir} already holds a cluster; run `down` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(binaries, time.monotonic() + timeout)
        except BaseException:
            self.stop(remove_state=False)
            raise

    def _start(self, binaries: dict[str, Path], deadline: float) -> None:
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)  # left by a crashed run
        pki = generate_pki(
            self.state_dir / "pki", extra_ips=self._extra_ips, extra_clients=self._extra_clients
        )
        self.ports = {
            "etcd-client": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": free_port(),
            "kube-controller-manager": free_port(),
            "kube-scheduler": free_port(),
        }
        self.server = f"https://127.0.0.1:{self.ports['kube-apiserver']}"
        _write_private(self.kubeconfig, kubeconfig(self.server, pki.ca.cert, pki.admin, "admin"))
        for name, pair in (
            ("controller-manager", pki.controller_manager),
            ("scheduler", pki.scheduler),
        ):
            config = kubeconfig(self.server, pki.ca.cert, pair, f"system:kube-{name}")
            _write_private(self.state_dir / f"{name}.kubeconfig", config)

        self._spawn("etcd", binaries, etcd_args(self.state_dir, self.ports))
        etcd = f"http://127.0.0.1:{self.ports['etcd-client']}/health"
        self._wait_ready("etcd", deadline, lambda: http_ok(etcd, None))
        self._spawn("kube-apiserver", binaries, apiserver_args(pki, self.ports))
        ssl_context = _client_context(pki)
        readyz = f"{self.server}/readyz"
        self._wait_ready("kube-apiserver", deadline, lambda: http_ok(readyz, ssl_context))
        self._spawn(
            "kube-controller-manager",
            binaries,
            controller_manager_args(self.state_dir, pki, self.ports),
        )
        self._spawn("kube-scheduler", binaries, scheduler_args(self.state_dir, pki, self.ports))
        for name in ("kube-controller-manager", "kube-scheduler"):
            healthz = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._wait_ready(name, deadline, functools.partial(http_ok, healthz, ssl_context))
        self.kubectl("apply", "-f", str(MANIFESTS / "network-attachment-definition-crd.yaml"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/network-attachment-definitions.k8s.cni.cncf.io",
            f"--timeout={max(1, int(deadline - time.monotonic()))}s",
        )

    def _spawn(self, name: str, binaries: dict[str, Path], args: list[str]) -> None:
        log = self.state_dir / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: `down` signals the whole group, and Ctrl-C on `up` spares it.
            # setpriv (util-linux) sets PR_SET_PDEATHSIG before exec'ing the binary.
            wrapper = ["setpriv", "--pdeathsig", "KILL", "--"] if self._die_with_parent else []
            proc = subprocess.Popen(
                [*wrapper, str(binaries[name]), *args, *self._extra_args.get(name, [])],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen[name] = proc
        self.pids[name] = proc.pid
        self._save_state(binaries)

    def _save_state(self, binaries: dict[str, Path]) -> None:
        processes = [
            _Process(name, pid, str(binaries[name].resolve()), str(self.state_dir / f"{name}.log"))
            for name, pid in self.pids.items()
        ]
        state = {
            "server": self.server,
            "ports": self.ports,
            "processes": [vars(p) for p in processes],
        }
        tmp = self.state_dir / f"{_STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / _STATE_FILE)

    def _wait_ready(self, name: str, deadline: float, ready: Callable[[], bool]) -> None:
        proc = self._popen[name]

        def check() -> bool:
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with {proc.returncode} while starting; its log"
                    f" ({self.state_dir / name}.log) ends with:\n{self.log_tail(name)}"
                )
            return ready()

        try:
            left = max(0.0, deadline - time.monotonic())
            poll(check, left, f"{name} to be ready", interval=0.2, error=ClusterError)
        except ClusterError as err:
            if proc.poll() is None:
                raise ClusterError(f"{err}; its log ends with:\n{self.log_tail(name)}") from err
            raise

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a component's log (for error messages)."""
        log = self.state_dir / f"{name}.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, remove_state: bool = True, timeout: float = 30) -> None:
        """Stop every process this cluster started (whole process groups), then remove its state."""
        if not self._owned:
            return
        for name in reversed(COMPONENTS):
            pid = self.pids.get(name)
            if pid is None:
                continue
            proc = self._popen.get(name)
            terminate_group(pid, proc, timeout)
        self.pids.clear()
        self._popen.clear()
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            (self.state_dir / _STATE_FILE).unlink(missing_ok=True)

    @staticmethod
    def recorded(state_dir: Path) -> bool:
        """Whether `state_dir` records a started cluster that `from_state` can stop."""
        return (state_dir / _STATE_FILE).exists()

    @classmethod
    def from_state(cls, state_dir: Path) -> Cluster:
        """A handle on a cluster that `up` started in another process (for `down`)."""
        cluster = cls(state_dir)
        state = json.loads((cluster.state_dir / _STATE_FILE).read_text())
        cluster.server = state["server"]
        cluster.ports = {k: int(v) for k, v in state["ports"].items()}
        for entry in state["processes"]:
            process = _Process(**entry)
            # Only a PID that still runs the binary we started: PIDs get reused.
            with contextlib.suppress(OSError):
                exe = os.readlink(f"/proc/{process.pid}/exe").removesuffix(" (deleted)")
                if exe == process.exe:
                    cluster.pids[process.name] = process.pid
        return cluster

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _client_context(pki: ClusterPki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    return context


def _up(state_dir: Path) -> int:
    if (state_dir / _STATE_FILE).exists():
        existing = Cluster.from_state(state_dir)
        if set(existing.pids) == set(COMPONENTS):
            print(f"cluster already up: {existing.server}; kubeconfig {existing.kubeconfig}")
            return 0
        print(f"cleaning up a partly stopped cluster in {state_dir}", file=sys.stderr)
        existing.stop()
    cluster = Cluster(state_dir)
    started = time.monotonic()
    cluster.start()
    print(
        f"cluster up in {time.monotonic() - started:.1f} s: {cluster.server}\n"
        f"  kubeconfig: {cluster.kubeconfig}\n  logs:       {state_dir}/*.log\n"
        f"  kubectl --kubeconfig {cluster.kubeconfig} get ns"
    )
    return 0


def _down(state_dir: Path) -> int:
    if not Cluster.recorded(state_dir):
        shutil.rmtree(state_dir, ignore_errors=True)
        print(f"no cluster in {state_dir}")
        return 0
    cluster = Cluster.from_state(state_dir)
    cluster.stop()
    left = [port for port in cluster.ports.values() if port_open(port)]
    if left:
        print(f"ports still open after stopping the cluster: {left}", file=sys.stderr)
        return 1
    print(f"cluster in {state_dir} stopped and removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.rigs.cluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory")
    args = parser.parse_args(argv)
    try:
        return _up(args.dir) if args.command == "up" else _down(args.dir)
    except ClusterError as err:
        print(f"cluster {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
