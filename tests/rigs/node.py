"""The node rig: a one-node Kubernetes cluster with a real kubelet, containerd and Multus in the VM.

    python -m tests.rigs.node up     # returns with the node Ready; kubeconfig .cluster/kubeconfig
    python -m tests.rigs.node down   # stops the VM and everything in it, removes the state

The host writes every certificate, kubeconfig and configuration file into `.node/` (the VM
reads and writes the project folder over 9p), then boots one VM in the background whose command
is tests/rigs/node_vm.sh. The guest runs the control plane, containerd, kubelet, kube-proxy,
Multus and the stand-ins for SR-IOV hardware (see that script). The host reaches the apiserver
through qemu's user-network port forward on 127.0.0.1; the guest's network is `restrict=on`, so
nothing leaves the VM. Under TCG everything is slow: a cold `up` takes minutes, so tests share
one node per run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.poll import poll
from tests.rigs import vm
from tests.rigs.cluster import BINARIES, MANIFESTS, REPO, Cluster, ClusterError, bin_dir
from tests.rigs.cluster_config import SERVICE_CIDR, kubeconfig
from tests.rigs.cluster_pki import ClusterPki, KeyPair, generate_pki
from tests.rigs.cluster_procs import free_port, pid_alive

STATE_DIR = REPO / ".node"
CHART = REPO / "charts" / "bond-injector"
RELEASE = "bond-injector"
NAMESPACE = "bond-injector"
KUBECONFIG = REPO / ".cluster" / "kubeconfig"
NODE_NAME = "bond-node"
NODE_IP = "10.0.2.15"  # qemu user networking's guest address; restrict=on keeps it inside
POD_CIDR = "10.244.0.0/24"
PEER = "10.56.217.1"  # the peer host behind the stand-in PF switches (examples/nads.yaml's gateway)
PEER_CIDR = f"{PEER}/24"
POOL_A = "intel.com/sriov_pf_a"
POOL_B = "intel.com/sriov_pf_b"
VFS_PER_POOL = 3
VM_MEMORY = "6G"
UP_TIMEOUT = float(os.environ.get("BOND_INJECTOR_NODE_TIMEOUT", "1500"))
GUEST_SCRIPT = Path(__file__).resolve().parent / "node_vm.sh"
NODE_BINARIES = (*BINARIES, "kubelet", "kube-proxy", "coredns")  # the cluster rig's and the node's
# The client identities beyond the cluster rig's: (common name, group).
_NODE_CLIENTS: dict[str, tuple[str, str | None]] = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", None),  # bootstrap RBAC binds system:node-proxier to it
    "multus": ("multus", None),  # bound by manifests/node-rbac.yaml
    "coredns": ("coredns", None),  # likewise
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


class NodeError(ClusterError):
    """The node rig could not be started, reached or stopped."""


@dataclass(frozen=True)
class Parts:
    """What the guest needs from the host, each checked before the VM boots."""

    bin: Path  # etcd ... kubectl (make deps)
    multus: Path  # the thin plugin built from ../shared/peers (make node-deps)
    standins: Path  # sriov-dp-standin, vf-standin (make node-deps)
    images: Path  # *.oci.tar (make images)


def cache_dir() -> Path:
    return bin_dir().parent


def find_parts() -> Parts:
    """Every part of the node, or a NodeError naming what is missing and the make target."""
    bins = bin_dir()
    cache = cache_dir()
    parts = Parts(
        bin=bins,
        multus=cache / "node" / "multus",
        standins=cache / "node",
        images=Path(os.environ.get("BOND_INJECTOR_NODE_IMAGES", cache / "images")),
    )
    missing = [str(bins / n) for n in NODE_BINARIES if not os.access(bins / n, os.X_OK)]
    missing += [
        str(p)
        for p in (parts.multus, parts.standins / "sriov-dp-standin", parts.standins / "vf-standin")
        if not os.access(p, os.X_OK)
    ]
    for tool in ("containerd", "runc", "ctr", "iptables", "conntrack"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt)")
    if not list(parts.images.glob("*.oci.tar")):
        missing.append(f"{parts.images}/*.oci.tar")
    if missing:
        raise NodeError(
            "the node rig needs " + ", ".join(missing) + "; run `make node-up` (it runs "
            "`make deps images node-deps` first)"
        )
    return parts


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _kubeconfig(pki: ClusterPki, stem: str, server: str = "https://127.0.0.1:6443") -> str:
    pair = KeyPair(cert=pki.ca.cert.parent / f"{stem}.crt", key=pki.ca.cert.parent / f"{stem}.key")
    return kubeconfig(server, pki.ca.cert, pair, stem)


def write_state(state: Path, parts: Parts, host_port: int) -> None:
    """Every file the guest script reads, and the host's kubeconfig."""
    pki = generate_pki(state / "pki", extra_ips=(NODE_IP,), extra_clients=_NODE_CLIENTS)
    for stem in (
        "admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "multus", "coredns"
    ):  # fmt: skip
        _write(state / f"{stem}.kubeconfig", _kubeconfig(pki, stem), 0o600)
    env = {
        "NODE_IP": NODE_IP,
        "NODE_NAME": NODE_NAME,
        "BIN": str(parts.bin),
        "CNI_SRC": "/usr/lib/cni",
        "MULTUS": str(parts.multus),
        "STANDINS": str(parts.standins),
        "IMAGES": str(parts.images),
        "VFS": str(VFS_PER_POOL),
        "POD_CIDR": POD_CIDR,
        "SERVICE_CIDR": SERVICE_CIDR,
        "PEER_CIDR": PEER_CIDR,
        "POOL_A": POOL_A,
        "POOL_B": POOL_B,
    }
    _write(state / "node.env", "".join(f"{k}='{v}'\n" for k, v in env.items()))
    _write(state / "kubelet.yaml", yaml.safe_dump(_kubelet_config(state)))
    _write(state / "kube-proxy.yaml", yaml.safe_dump(_kube_proxy_config(state)))
    _write(state / "containerd.toml", _containerd_config(parts))
    _write(state / "00-multus.conf", json.dumps(_multus_config(), indent=2))
    _write(state / "image-aliases", _image_aliases(parts.images))
    manifests = state / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    shutil.copy(MANIFESTS / "network-attachment-definition-crd.yaml", manifests)
    shutil.copy(MANIFESTS / "node-rbac.yaml", manifests)
    _write(state / "Corefile", _corefile(state))
    # The host's view: the same admin identity through qemu's forward on 127.0.0.1.
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    _write(KUBECONFIG, _kubeconfig(pki, "admin", f"https://127.0.0.1:{host_port}"), 0o600)


def _kubelet_config(state: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "x509": {"clientCAFile": str(state / "pki" / "ca.crt")},
            "webhook": {"enabled": True},
            "anonymous": {"enabled": False},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "clusterDNS": [NODE_IP],  # CoreDNS runs on the node itself (node_vm.sh)
        "clusterDomain": "cluster.local",
        # Everything sits on tmpfs in guest memory: no disk pressure to act on, and image GC
        # would delete the images that nothing can pull back.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "serializeImagePulls": False,
        "podCIDR": POD_CIDR,
        "maxPods": 30,
        "runtimeRequestTimeout": "10m",  # TCG: a sandbox can take a minute to start
    }


def _kube_proxy_config(state: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(state / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "conntrack": {"maxPerCore": 0},  # leave the guest's conntrack sysctls alone
    }


def _corefile(state: Path) -> str:
    """Cluster DNS as users have it (Services by name), served from the node's address."""
    return f""".:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {state / "coredns.kubeconfig"}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def _containerd_config(parts: Parts) -> str:
    return f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{_sandbox_image(parts.images)}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
"""


def _multus_config() -> dict[str, object]:
    """Multus thin plugin: the pod's networks annotation, over a default network for eth0."""
    return {
        "cniVersion": "1.0.0",
        "name": "multus-cni-network",
        "type": "multus",
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "logFile": "/var/log/multus.log",
        "logLevel": "verbose",
        "delegates": [
            {
                "cniVersion": "1.0.0",
                "name": "podnet",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            }
        ],
    }


def _image_index(images: Path) -> dict[str, str]:
    """`make images` writes images.json: {name: reference}; the rig needs pause and a workload."""
    index = images / "images.json"
    if not index.exists():
        raise NodeError(f"{index} is missing; run `make images`")
    loaded = json.loads(index.read_text())
    return {str(k): str(v["reference"] if isinstance(v, dict) else v) for k, v in loaded.items()}


def _sandbox_image(images: Path) -> str:
    return _image_index(images)["pause"]


def _image_aliases(images: Path) -> str:
    # The seed guide's pod runs alpine:latest, which cannot be pulled here: the rig's workload
    # image (busybox and iproute2, see `make images`) answers to that name on this node only.
    workload = _image_index(images)["bond-test"]
    return f"{workload} docker.io/library/alpine:latest\n"


def install_chart(cluster: Cluster) -> None:
    """`helm install` as a user would, with the images `make images` built: no webhook.url, so
    the hook Jobs make the certificates and the webhook runs as a Deployment on the node."""
    images = _image_index(find_parts().images)

    def repo_tag(reference: str) -> tuple[str, str]:
        repo, _, tag = reference.rpartition(":")
        return repo, tag

    webhook_repo, webhook_tag = repo_tag(images["webhook"])
    cni_repo, cni_tag = repo_tag(images["cni"])
    # The peer is on the bond's link; eth0 keeps the pod's default route.
    subnet = PEER.rsplit(".", 1)[0]
    ipam = {"type": "host-local", "subnet": f"{subnet}.0/24", "rangeStart": f"{subnet}.10"}
    cluster.helm(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
        "--wait", "--timeout", "15m",
        "--set", f"webhook.image.repository={webhook_repo}",
        "--set", f"webhook.image.tag={webhook_tag}",
        "--set", f"cniInstaller.image.repository={cni_repo}",
        "--set", f"cniInstaller.image.tag={cni_tag}",
        # STAND-IN: the rig's VFs are veths handed over by vf-standin (see node_vm.sh).
        "--set", "networks.legType=vf-standin",
        # The warm helper, least-privileged (off by default: see the README's Security section).
        "--set", "cniInstaller.helper.enabled=true",
        "--set-json", f"networks.bond.ipam={json.dumps(ipam)}",
    )  # fmt: skip


class Node:
    """The running node rig whose state lives in `state` (default .node/)."""

    def __init__(self, state: Path = STATE_DIR) -> None:
        self.state = state

    @property
    def pid_file(self) -> Path:
        return self.state / "vm.pid"

    def running(self) -> bool:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def cluster(self) -> Cluster:
        """A Cluster handle (kubectl, helm) on the node's apiserver."""
        return Cluster.attach(KUBECONFIG, self.state / "client")

    def up(self, timeout: float = UP_TIMEOUT) -> Cluster:
        if self.running():
            return self.cluster()
        parts = find_parts()
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True)
        port = free_port()
        write_state(self.state, parts, port)
        kernel = vm.find_kernel()
        path = vm.tool_path()
        argv = vm.vng_command(
            kernel,
            f"bash {GUEST_SCRIPT} {self.state}",
            rwdir=REPO,
            memory=VM_MEMORY,
            cpus=vm.DEFAULT_CPUS,
            path=path,
            qemu_opts=(
                f"-netdev user,id=node0,restrict=on,"
                f"hostfwd=tcp:127.0.0.1:{port}-{NODE_IP}:6443 "
                "-device virtio-net-pci,netdev=node0"
            ),
        )
        log = (self.state / "vm.log").open("ab")
        # qemu reopens /proc/self/fd/1: a pipe to cat, not a file (see vm._run).
        proc = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 2>&1 | cat', "sh", *argv],
            cwd=REPO,
            env={**os.environ, "PATH": path},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        started = time.monotonic()

        def ready() -> bool:
            if (self.state / "failed").exists() or proc.poll() is not None:
                raise NodeError(f"the node did not come up:\n{self.log_tail()}")
            return (self.state / "ready").exists()

        try:
            poll(ready, timeout, f"node {NODE_NAME} Ready", interval=2, error=ClusterError)
        except ClusterError:
            self.down()
            raise
        print(f"node up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return self.cluster()

    def log_tail(self, lines: int = 40) -> str:
        log = self.state / "logs" / "node.log"
        text = log.read_text(errors="replace") if log.exists() else "(no node.log)"
        vm_log = self.state / "vm.log"
        text += "\n--- vm.log ---\n" + (
            vm_log.read_text(errors="replace")[-3000:] if vm_log.exists() else ""
        )
        return "\n".join(text.splitlines()[-lines:])

    def down(self, timeout: float = 120) -> None:
        """Ask the guest to stop cleanly, then make sure qemu is gone; remove the state."""
        if self.running():
            pid = int(self.pid_file.read_text())
            (self.state / "stop").touch()
            try:
                poll(lambda: not pid_alive(pid), timeout, "the node VM to stop", error=ClusterError)
            except ClusterError:
                os.killpg(pid, signal.SIGKILL)
                poll(lambda: not pid_alive(pid), 30, "the node VM to die", error=ClusterError)
        # The logs outlive the node (a failed start is read afterwards); the rest goes.
        last = cache_dir() / "node-last-logs"
        shutil.rmtree(last, ignore_errors=True)
        if (self.state / "logs").is_dir():
            last.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(self.state / "logs", last)
        shutil.rmtree(self.state, ignore_errors=True)
        KUBECONFIG.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.rigs.node", description=__doc__)
    parser.add_argument("command", choices=["up", "install", "down"])
    args = parser.parse_args(argv)
    node = Node()
    try:
        if args.command == "up":
            node.up()
            print(f"node {NODE_NAME} Ready; kubectl --kubeconfig {KUBECONFIG} get nodes")
        elif args.command == "install":
            install_chart(node.cluster())
            print(f"helm release {RELEASE} installed in namespace {NAMESPACE}")
        else:
            node.down()
            print("node stopped and removed")
    except ClusterError as err:
        print(f"node {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
