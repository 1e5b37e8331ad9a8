"""The node rig: a one-node Kubernetes cluster with a real kubelet, containerd and Multus in the VM.

    python -m tests.rigs.node up     # returns with the node Ready; kubeconfig .cluster/kubeconfig
    python -m tests.rigs.node down   # stops the VM and the control plane, removes the state

The control plane (etcd, kube-apiserver, controller-manager, scheduler) runs on the host, as the
cluster rig runs it: under TCG the apiserver alone needed minutes to start and timed out its own
clients, natively it is ready in seconds. The node runs in one VM, because only Debian's kernel
there can bond: containerd, runc, kubelet, kube-proxy, CoreDNS, Multus and the stand-ins for
SR-IOV hardware (see tests/rigs/node_vm.sh). Every byte stays on this machine:

    guest -> apiserver   qemu `guestfwd`: 10.0.2.100:<port> inside the guest runs
                         `socat - TCP:127.0.0.1:<port>` on the host for each connection
    apiserver -> guest   kube-apiserver's egress selector (`cluster`: kubelet, webhooks, pods)
                         speaks HTTP CONNECT to 127.0.0.1:<proxy>, which qemu's `hostfwd`
                         carries to tinyproxy on the node (Debian's), which dials the kubelet
                         or the pod

The guest's network is qemu user networking with `restrict=on`: nothing else leaves the VM.
The host writes every certificate, kubeconfig and configuration file into `.node/` (the VM reads
and writes the project folder over 9p). Under TCG the node is still slow: a cold `up` takes
minutes, so tests share one node per run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.poll import poll
from tests.rigs import vm
from tests.rigs.cluster import BINARIES, MANIFESTS, REPO, Cluster, ClusterError, bin_dir
from tests.rigs.cluster_config import kubeconfig
from tests.rigs.cluster_pki import KeyPair
from tests.rigs.cluster_procs import free_port, pid_alive

STATE_DIR = REPO / ".node"
CHART = REPO / "charts" / "bond-injector"
RELEASE = "bond-injector"
NAMESPACE = "bond-injector"
NODE_NAMESPACE = f"{NAMESPACE}-node"  # the chart makes it for the node DaemonSet
KUBECONFIG = REPO / ".cluster" / "kubeconfig"
NODE_NAME = "bond-node"
NODE_IP = vm.GUEST_IP  # qemu user networking's guest address; restrict=on keeps it inside
API_FROM_GUEST = vm.API_FROM_GUEST  # the host's apiserver as the guest reaches it (qemu guestfwd)
GUEST_PROXY_PORT = 3128  # tinyproxy on the node: the apiserver's way in (egress selector)
SEED_LABEL = "bond-containerd"  # the guest finds containerd's root disk by this label
SEED_HEADROOM_MIB = 4096  # sparse: the containers' writable layers and logs
EGRESS_SOCKET = "egress.sock"  # the apiserver's egress socket; socat carries it to qemu's hostfwd
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
    "coredns": ("coredns", None),  # likewise
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


class NodeError(ClusterError):
    """The node rig could not be started, reached or stopped."""


@dataclass(frozen=True)
class Parts:
    """What the guest needs from the host, each checked before the VM boots."""

    bin: Path  # etcd ... kubectl (make deps)
    multus: Path  # multus-daemon and multus-shim, built from ../shared/peers (make node-deps)
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
        multus=cache / "node",
        standins=cache / "node",
        images=Path(os.environ.get("BOND_INJECTOR_NODE_IMAGES", cache / "images")),
    )
    missing = [str(bins / n) for n in NODE_BINARIES if not os.access(bins / n, os.X_OK)]
    missing += [
        str(p)
        for p in (
            parts.multus / "multus-daemon",
            parts.multus / "multus-shim",
            parts.standins / "sriov-dp-standin",
            parts.standins / "vf-standin",
        )
        if not os.access(p, os.X_OK)
    ]
    for tool in ("containerd", "runc", "ctr", "iptables", "conntrack", "socat", "tinyproxy"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt)")
    if not list(parts.images.glob("*.oci.tar")):
        missing.append(f"{parts.images}/*.oci.tar")
    if missing:
        raise NodeError(
            "the node rig needs " + ", ".join(missing) + "; run `make node-up` (it runs "
            "`make deps images node-deps` first, and node-deps installs the apt packages)"
        )
    return parts


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def apiserver_args(state: Path) -> list[str]:
    """The host apiserver's flags beyond the cluster rig's: how the node reaches it, how it
    reaches the node (kubelet, webhook pods) and with which client identity."""
    egress = state / "egress-selector.yaml"
    _write(
        egress,
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.k8s.io/v1beta1",
                "kind": "EgressSelectorConfiguration",
                "egressSelections": [
                    {
                        "name": "cluster",
                        "connection": {
                            "proxyProtocol": "HTTPConnect",
                            "transport": {"uds": {"udsName": str(state / EGRESS_SOCKET)}},
                        },
                    }
                ],
            }
        ),
    )
    pki = state / "control-plane" / "pki"
    return [
        f"--advertise-address={API_FROM_GUEST}",  # the `kubernetes` Service's endpoint for pods
        f"--egress-selector-config-file={egress}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--enable-aggregator-routing=true",  # webhooks dialled at endpoint (pod) IPs
    ]


def write_state(state: Path, parts: Parts, control_plane: Cluster) -> None:
    """Every file the guest script reads, and the host's kubeconfig."""
    pki = control_plane.state_dir / "pki"
    api_port = control_plane.ports["kube-apiserver"]
    server = f"https://{API_FROM_GUEST}:{api_port}"
    for stem in ("kubelet", "kube-proxy", "coredns"):
        pair = KeyPair(cert=pki / f"{stem}.crt", key=pki / f"{stem}.key")
        _write(state / f"{stem}.kubeconfig", kubeconfig(server, pki / "ca.crt", pair, stem), 0o600)
    _write(state / "apiserver-fwd", f"#!/bin/sh\nexec socat - TCP:127.0.0.1:{api_port}\n", 0o755)
    env = {
        "NODE_IP": NODE_IP,
        "NODE_NAME": NODE_NAME,
        "API_HOST": API_FROM_GUEST,
        "API_PORT": str(api_port),
        "PROXY_PORT": str(GUEST_PROXY_PORT),
        "BIN": str(parts.bin),
        "CNI_SRC": "/usr/lib/cni",
        "MULTUS": str(parts.multus),
        "STANDINS": str(parts.standins),
        "SEED_LABEL": SEED_LABEL,
        "VFS": str(VFS_PER_POOL),
        "POD_CIDR": POD_CIDR,
        "PEER_CIDR": PEER_CIDR,
        "POOL_A": POOL_A,
        "POOL_B": POOL_B,
    }
    _write(state / "node.env", "".join(f"{k}='{v}'\n" for k, v in env.items()))
    _write(state / "kubelet.yaml", yaml.safe_dump(_kubelet_config(pki)))
    _write(state / "kube-proxy.yaml", yaml.safe_dump(_kube_proxy_config(state)))
    _write(state / "containerd.toml", _containerd_config(parts))
    _write(state / "tinyproxy.conf", _tinyproxy_config(state))
    _write(state / "10-podnet.conflist", json.dumps(_podnet_config(), indent=2))
    _write(state / "multus-daemon.json", json.dumps(_multus_daemon_config(), indent=2))
    # Multus' daemon reads in-cluster configuration only: its ServiceAccount's token and the CA,
    # which the guest puts where a pod would have them.
    token = control_plane.kubectl(
        "-n", "kube-system", "create", "token", "multus", "--duration=48h"
    ).stdout.strip()  # fmt: skip
    _write(state / "multus-sa" / "token", token, 0o600)
    _write(state / "multus-sa" / "namespace", "kube-system")
    shutil.copy(pki / "ca.crt", state / "multus-sa" / "ca.crt")
    _write(state / "Corefile", _corefile(state))
    # The host's view: the control plane's own admin kubeconfig.
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    _write(KUBECONFIG, control_plane.kubeconfig.read_text(), 0o600)


def _tinyproxy_config(state: Path) -> str:
    """Debian's tinyproxy as the apiserver's HTTP CONNECT proxy into the node. Only qemu's
    hostfwd reaches it (from 127.0.0.1 on the host); with no Allow and no ConnectPort lines it
    tunnels to any address and port, which here means the kubelet and the pods. It runs as root
    (no User line): its log goes to the project folder over 9p."""
    return f"""Listen {NODE_IP}
Port {GUEST_PROXY_PORT}
Timeout 3600
MaxClients 200
LogLevel Warning
LogFile "{state / "logs" / "tinyproxy.log"}"
DisableViaHeader Yes
"""


def _kubelet_config(pki: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "x509": {"clientCAFile": str(pki / "ca.crt")},
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


def _podnet_config() -> dict[str, object]:
    """The cluster network for eth0 (Debian's bridge + host-local), which Multus' daemon wraps
    into its own 00-multus.conf as the default delegate."""
    return {
        "cniVersion": "1.0.0",
        "name": "podnet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,  # pods reach the host's apiserver through qemu's NAT
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


def _multus_daemon_config() -> dict[str, object]:
    """multus-daemon's own file, as Multus' thick DaemonSet ships it, for a daemon on the node
    itself (no chrootDir). In `auto` mode it writes 00-multus.conf (type multus-shim) around
    the cluster network's config; this Multus commit's daemon exits at once in the other mode
    (a configuration file of our own: nothing waits on its server then).

    Thick, not the thin plugin: the thin plugin allows each API request 250 ms
    (pkg/multus/multus.go, shortPollDuration) on a fresh TLS connection, which a node under TCG
    does not meet; the daemon's pod informer answers from memory."""
    return {
        "cniVersion": "1.0.0",
        "logLevel": "verbose",
        "logToStderr": True,
        "cniConfigDir": "/etc/cni/net.d",
        "multusAutoconfigDir": "/etc/cni/net.d",
        "multusConfigFile": "auto",
        "socketDir": "/run/multus/",
    }


def containerd_seed(parts: Parts) -> Path:
    """containerd's root with every image of `make images` imported and unpacked, as an ext4
    disk image for the guest.

    Importing in the guest cost 14 minutes under TCG (gunzip and sha256 of 170 MB of layers,
    emulated), and untarring a prepared root over 9p still 4 minutes; Debian's containerd imports
    natively here in seconds, in a private mount namespace (its overlayfs snapshotter mounts),
    mke2fs copies its root into a sparse ext4 image, and qemu attaches that as a disk with
    `snapshot=on` (the guest's writes never reach the file), which the guest mounts as
    containerd's root. Cached, keyed by the images and the containerd version.
    """
    index = parts.images / "images.json"
    version = subprocess.run(
        ["containerd", "--version"], capture_output=True, text=True, check=True
    ).stdout
    aliases = _image_aliases(parts.images)
    key = hashlib.sha256(index.read_bytes() + version.encode() + aliases.encode()).hexdigest()
    seed = cache_dir() / "node" / f"containerd-seed-{key[:16]}.img"
    if seed.exists():
        return seed
    for old in seed.parent.glob("containerd-seed-*"):
        old.unlink()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="containerd-seed.", dir=seed.parent) as tmp:
        work = Path(tmp)
        (work / "config.toml").write_text(
            f'''version = 2
root = "{work / "root"}"
state = "{work / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{work / "state" / "containerd.sock"}"
'''
        )
        (work / "aliases").write_text(aliases)
        archives = " ".join(shlex.quote(str(a)) for a in sorted(parts.images.glob("*.oci.tar")))
        script = f"""set -eu
cd {shlex.quote(tmp)}
containerd --config config.toml >containerd.log 2>&1 &
trap 'kill $! 2>/dev/null; wait' EXIT
ctr="ctr --address state/containerd.sock -n k8s.io"
for i in $(seq 600); do $ctr version >/dev/null 2>&1 && break; sleep 0.1; done
for archive in {archives}; do $ctr images import --snapshotter overlayfs "$archive" >/dev/null; done
while read -r source target; do
  [ -n "$source" ] && $ctr images tag --force "$source" "$target" >/dev/null
done <aliases
kill $! && wait $! || true
trap - EXIT
size=$(( $(du -sm root | cut -f1) + {SEED_HEADROOM_MIB} ))
mke2fs -q -F -t ext4 -L {SEED_LABEL} -d root {shlex.quote(str(seed))}.partial "${{size}}M"
"""
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = work / "containerd.log"
            raise NodeError(
                f"importing the images into a containerd root failed:\n{result.stderr}\n"
                + (log.read_text()[-2000:] if log.exists() else "")
            )
    Path(f"{seed}.partial").replace(seed)
    print(f"containerd seed {seed.name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return seed


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
        "--wait", "--timeout", "30m",
        # TCG: Python's start-up in a container takes minutes here (natively about a second).
        "--set", "certificates.builtin.activeDeadlineSeconds=1800",
        "--set", "webhook.startupSeconds=900",
        "--set", "webhook.replicaCount=1",  # one node; each Python start costs minutes here
        "--set", "cniInstaller.helper.probeTimeoutSeconds=60",
        "--set", "webhook.probeTimeoutSeconds=30",
        "--set", f"webhook.image.repository={webhook_repo}",
        "--set", f"webhook.image.tag={webhook_tag}",
        "--set", f"cniInstaller.image.repository={cni_repo}",
        "--set", f"cniInstaller.image.tag={cni_tag}",
        # STAND-IN: the rig's VFs are veths handed over by vf-standin (see node_vm.sh).
        "--set", "networks.legType=vf-standin",
        # The warm helper, least-privileged (off by default: see the README's Security section).
        "--set", "cniInstaller.helper.enabled=true",
        # The bond health agent beside it (off by default), its first start as slow as the rest.
        "--set", "cniInstaller.agent.enabled=true",
        "--set", "cniInstaller.agent.startupSeconds=900",
        "--set-json", f"networks.bond.ipam={json.dumps(ipam)}",
    )  # fmt: skip


class Node:
    """The running node rig whose state lives in `state` (default .node/)."""

    def __init__(self, state: Path = STATE_DIR) -> None:
        self.state = state
        # What this process started (the VM, socat, the control plane), kept so that `down`
        # reaps them; `down` in another process finds them by their pid files.
        self._children: list[subprocess.Popen[bytes]] = []
        self._control_plane: Cluster | None = None

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

    @property
    def control_plane_dir(self) -> Path:
        return self.state / "control-plane"

    def up(self, timeout: float = UP_TIMEOUT) -> Cluster:
        if self.running():
            return self.cluster()
        parts = find_parts()
        self.down()  # whatever a crashed `up` left: its VM, its control plane
        self.state.mkdir(parents=True)
        started = time.monotonic()
        proxy_port = free_port()
        control_plane = Cluster(
            self.control_plane_dir,
            extra_ips=(API_FROM_GUEST,),
            extra_clients=_NODE_CLIENTS,
            extra_args={"kube-apiserver": apiserver_args(self.state)},
        )
        self._control_plane = control_plane
        try:
            self._spawn_egress(proxy_port)
            control_plane.start()
            control_plane.kubectl("apply", "-f", str(MANIFESTS / "node-rbac.yaml"))
            write_state(self.state, parts, control_plane)
            print(f"control plane up in {time.monotonic() - started:.0f} s", file=sys.stderr)
            self._boot(proxy_port, control_plane.ports["kube-apiserver"], containerd_seed(parts))
            self._wait_ready(control_plane, started + timeout)
        except BaseException:
            self.down()
            raise
        print(f"node up in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return self.cluster()

    def _spawn_egress(self, proxy_port: int) -> None:
        """The apiserver's egress selector speaks HTTP CONNECT over a unix socket (its TCP
        transport insists on TLS, which tinyproxy does not speak): socat carries each connection
        to qemu's hostfwd, and so to tinyproxy on the node."""
        socket = self.state / EGRESS_SOCKET
        with (self.state / "egress-socat.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    "socat",
                    f"UNIX-LISTEN:{socket},fork,mode=600",
                    f"TCP:127.0.0.1:{proxy_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.append(proc)
        (self.state / "egress-socat.pid").write_text(str(proc.pid))
        poll(socket.exists, 10, f"socat's {socket}", interval=0.05, error=ClusterError)

    def _boot(self, proxy_port: int, api_port: int, seed: Path) -> None:
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
                f"hostfwd=tcp:127.0.0.1:{proxy_port}-{NODE_IP}:{GUEST_PROXY_PORT},"
                f"guestfwd=tcp:{API_FROM_GUEST}:{api_port}-cmd:{self.state / 'apiserver-fwd'} "
                "-device virtio-net-pci,netdev=node0 "
                f"-drive file={seed},if=virtio,format=raw,snapshot=on"
            ),
        )
        # qemu reopens /proc/self/fd/1: a pipe to cat, not a file (see vm._run).
        with (self.state / "vm.log").open("ab") as log:
            proc = subprocess.Popen(
                ["sh", "-c", 'exec "$@" 2>&1 | cat', "sh", *argv],
                cwd=REPO,
                env={**os.environ, "PATH": path},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.append(proc)
        self.pid_file.write_text(str(proc.pid))

    def _wait_ready(self, control_plane: Cluster, deadline: float) -> None:
        """The guest says its daemons run; then kubelet's own Ready condition decides."""

        def guest_up() -> bool:
            if (self.state / "failed").exists() or not self.running():
                raise NodeError(f"the node did not come up:\n{self.log_tail()}")
            return (self.state / "ready").exists()

        def node_ready() -> bool:
            guest_up()
            result = control_plane.kubectl(
                "get", "node", NODE_NAME, "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                check=False,
            )  # fmt: skip
            return result.stdout.strip() == "True"

        poll(guest_up, deadline - time.monotonic(), "the node's daemons", interval=2,
             error=ClusterError)  # fmt: skip
        poll(node_ready, deadline - time.monotonic(), f"node {NODE_NAME} Ready", interval=2,
             error=ClusterError)  # fmt: skip

    def log_tail(self, lines: int = 40) -> str:
        log = self.state / "logs" / "node.log"
        text = log.read_text(errors="replace") if log.exists() else "(no node.log)"
        vm_log = self.state / "vm.log"
        text += "\n--- vm.log ---\n" + (
            vm_log.read_text(errors="replace")[-3000:] if vm_log.exists() else ""
        )
        return "\n".join(text.splitlines()[-lines:])

    def down(self, timeout: float = 120) -> None:
        """Ask the guest to stop cleanly, make sure qemu is gone, stop the control plane;
        remove the state."""
        if self.running():
            pid = int(self.pid_file.read_text())
            (self.state / "stop").touch()
            try:
                poll(lambda: not pid_alive(pid), timeout, "the node VM to stop", error=ClusterError)
            except ClusterError:
                os.killpg(pid, signal.SIGKILL)
                poll(lambda: not pid_alive(pid), 30, "the node VM to die", error=ClusterError)
        if self._control_plane is not None:
            self._control_plane.stop(remove_state=False)
            self._control_plane = None
        elif Cluster.recorded(self.control_plane_dir):
            Cluster.from_state(self.control_plane_dir).stop(remove_state=False)
        with contextlib.suppress(OSError, ValueError):
            socat = int((self.state / "egress-socat.pid").read_text())
            if pid_alive(socat):
                os.killpg(socat, signal.SIGTERM)
                poll(lambda: not pid_alive(socat), 10, "socat to stop", error=ClusterError)
        for child in self._children:  # stopped above; reap them
            child.wait(timeout=30)
        self._children.clear()
        # The logs outlive the node (a failed start is read afterwards); the rest goes.
        logs = self.state / "logs"
        for log in self.control_plane_dir.glob("*.log"):
            logs.mkdir(parents=True, exist_ok=True)
            shutil.move(log, logs / log.name)
        if logs.is_dir():
            last = cache_dir() / "node-last-logs"
            shutil.rmtree(last, ignore_errors=True)
            last.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(logs, last)
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
