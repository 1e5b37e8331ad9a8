"""The developer environment: a local control plane with bond-injector installed and its webhook
running on this machine.

    python -m tests.rigs.dev up     # make dev-up
    python -m tests.rigs.dev down   # make dev-down

`up`: the cluster rig (etcd, kube-apiserver, controller-manager, scheduler; kubeconfig in
.cluster/kubeconfig), a CA and serving pair for 127.0.0.1 from `bond-injector certs generate`,
the webhook served locally by `bond-injector serve --kubeconfig` with the chart's own profiles,
and the chart installed as release `bond-injector` in namespace `bond-injector` with
`webhook.url` pointing at that webhook (default NADs and profile). Re-running `up` is safe.
The e2e tests reuse the pieces (`start_webhook`, `install_chart`) against their own cluster.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509

from tests.poll import poll
from tests.rigs import vm
from tests.rigs.cluster import COMPONENTS, DEFAULT_DIR, REPO, Cluster
from tests.rigs.cluster_procs import ClusterError, free_port, pid_alive

DEV_DIR = REPO / ".dev"
CHART = REPO / "charts" / "bond-injector"
RELEASE = "bond-injector"
NAMESPACE = "bond-injector"
NODE_NAMESPACE = f"{NAMESPACE}-node"  # the chart makes it for the node DaemonSet
DEFAULT_PORT = 9443


@dataclass(frozen=True)
class WebhookProcess:
    """A `bond-injector serve` started by `start_webhook`, in its own process group."""

    pid: int
    port: int
    ca_file: Path
    log: Path
    # Kept so the child is reaped (a dropped Popen of a live child warns); None after `up` exits.
    proc: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    @property
    def ca_bundle_b64(self) -> str:
        return base64.b64encode(self.ca_file.read_bytes()).decode()

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        try:
            with opener.open(f"https://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 15) -> None:
        stop_process_group(self.pid, timeout)
        if self.proc is not None:
            self.proc.wait(timeout=timeout)


def generate_certs(out_dir: Path) -> Path:
    """The webhook's CA and serving pair for 127.0.0.1 (kept when still healthy)."""
    from certs.cli import main as certs_main  # noqa: PLC0415 (only `up` needs it)

    code = certs_main(
        ["generate", "--out-dir", str(out_dir), "--ip", "127.0.0.1", "--dns", "localhost"]
    )
    if code != 0:
        raise ClusterError(f"`bond-injector certs generate` exited {code}")
    return out_dir


def render_profiles(cluster: Cluster, out: Path, *sets: str) -> Path:
    """The profiles file exactly as the chart renders it into its ConfigMap."""
    rendered = cluster.helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--show-only", "templates/webhook-configmap.yaml", *_dev_sets("https://127.0.0.1:1/", ""),
        *sets,
    ).stdout  # fmt: skip
    out.write_text(yaml.safe_load(rendered)["data"]["profiles.yaml"])
    return out


def start_webhook(
    kubeconfig: Path, certs_dir: Path, profiles: Path, log: Path, *, port: int | None = None
) -> WebhookProcess:
    """Run `bond-injector serve` on 127.0.0.1 against the cluster; wait until /readyz says 200."""
    port = port or free_port()
    command = [
        str(Path(sys.executable).with_name("bond-injector")),
        "serve",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--tls-cert", str(certs_dir / "tls.crt"),
        "--tls-key", str(certs_dir / "tls.key"),
        "--profiles", str(profiles),
        "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    webhook = WebhookProcess(proc.pid, port, certs_dir / "ca.crt", log, proc)

    def up() -> bool:
        if proc.poll() is not None:
            raise ClusterError(f"the webhook exited {proc.returncode}; see {log}:\n{_tail(log)}")
        return webhook.ready()

    try:
        poll(up, 60, f"the webhook's /readyz on 127.0.0.1:{port}", error=ClusterError)
    except BaseException:
        webhook.stop()
        raise
    return webhook


def install_chart(
    cluster: Cluster,
    webhook_url: str,
    ca_bundle_b64: str,
    *sets: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> None:
    """`helm upgrade --install` the chart with the webhook outside the cluster."""
    cluster.helm(
        "upgrade", "--install", release, str(CHART), "--namespace", namespace,
        "--create-namespace", "--wait", "--timeout", "120s",
        *_dev_sets(webhook_url, ca_bundle_b64), *sets,
    )  # fmt: skip


def _dev_sets(webhook_url: str, ca_bundle_b64: str) -> list[str]:
    # No kubelet runs pods in the rig: no webhook pods (url mode) and no CNI installer.
    return [
        "--set", f"webhook.url={webhook_url}",
        "--set", "certificates.mode=external",
        "--set", f"certificates.external.caBundle={ca_bundle_b64 or 'LS0t'}",
        "--set", "cniInstaller.enabled=false",
    ]  # fmt: skip


def stop_process_group(pid: int, timeout: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    try:
        poll(lambda: not pid_alive(pid), timeout, f"webhook pid {pid} to exit", error=ClusterError)
    except ClusterError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _webhook_pid(dev_dir: Path) -> int | None:
    """The recorded webhook pid, if that process is still our `bond-injector serve`."""
    try:
        pid = int((dev_dir / "webhook.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if any(arg.endswith(b"bond-injector") for arg in cmdline) and b"serve" in cmdline:
        return pid
    return None


def up(cluster_dir: Path, dev_dir: Path, port: int) -> int:
    state = cluster_dir / "processes.json"
    if (
        state.exists()
        and set(Cluster.from_state(cluster_dir).pids) == set(COMPONENTS)
        and _serves_guests(cluster_dir)
    ):
        cluster = Cluster.from_state(cluster_dir)
        print(f"cluster already up: {cluster.server}")
    else:
        if state.exists():
            Cluster.from_state(cluster_dir).stop()
        # The demo's VM reaches the apiserver at vm.API_FROM_GUEST (its bond health agent).
        cluster = Cluster(cluster_dir, extra_ips=(vm.API_FROM_GUEST,))
        cluster.start()
        print(f"cluster up: {cluster.server}")
    dev_dir.mkdir(parents=True, exist_ok=True)
    certs_dir = generate_certs(dev_dir / "certs")
    profiles = render_profiles(cluster, dev_dir / "profiles.yaml")
    old = _webhook_pid(dev_dir)
    if old is not None:
        stop_process_group(old)
    webhook = start_webhook(
        cluster.kubeconfig, certs_dir, profiles, dev_dir / "webhook.log", port=port
    )
    (dev_dir / "webhook.pid").write_text(str(webhook.pid))
    print(f"webhook up: {webhook.url} (pid {webhook.pid}, log {webhook.log})")
    install_chart(cluster, webhook.url, webhook.ca_bundle_b64)
    # So that the printed `kubectl apply` works at once: pods need their ServiceAccount.
    cluster.wait_for_default_service_account("default")
    kubeconfig = cluster.kubeconfig
    print(
        f"chart installed: release {RELEASE} in namespace {NAMESPACE}\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        "  kubectl apply -f examples/seed-pod.yaml   # labelled bond=true, no annotation\n"
        "  kubectl get pod test-pod -o yaml          # the networks annotation, one VF per pool\n"
        "  make dev-down                             # stop it all"
    )
    return 0


def _serves_guests(cluster_dir: Path) -> bool:
    """Whether the running apiserver's certificate names the address VMs reach it at."""
    cert = x509.load_pem_x509_certificate((cluster_dir / "pki" / "apiserver.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ipaddress.ip_address(vm.API_FROM_GUEST) in names.get_values_for_type(x509.IPAddress)


def down(cluster_dir: Path, dev_dir: Path) -> int:
    pid = _webhook_pid(dev_dir)
    if pid is not None:
        stop_process_group(pid)
        print(f"webhook (pid {pid}) stopped")
    if (cluster_dir / "processes.json").exists():
        Cluster.from_state(cluster_dir).stop()
        print(f"cluster in {cluster_dir} stopped and removed")
    for name in ("webhook.pid", "profiles.yaml", "webhook.log"):
        (dev_dir / name).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.rigs.dev", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--cluster-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--dir", type=Path, default=DEV_DIR, help="certs, profiles, webhook log")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the webhook's port")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.cluster_dir.resolve(), args.dir.resolve(), args.port)
        return down(args.cluster_dir.resolve(), args.dir.resolve())
    except ClusterError as err:
        print(f"dev {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
