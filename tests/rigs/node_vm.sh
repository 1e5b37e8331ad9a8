#!/usr/bin/env bash
# The node rig's guest side: runs as the VM's command (see tests/rigs/node.py, which writes every
# certificate, kubeconfig and config file into $1 first) and keeps a one-node cluster running
# until $1/stop appears:
#
#   containerd + runc                                              the container runtime
#   kubelet, kube-proxy, CoreDNS                                   the node
#   Multus (thick: daemon + shim, built from ../shared/peers)      the meta-plugin, default network:
#                                                                  Debian's bridge + host-local
#
# The node runs in the VM because only Debian's kernel there can bond; the control plane runs on
# the host (tests/rigs/node.py), reached through qemu's guestfwd, and reaches in through tinyproxy.
# The guest NIC is qemu user networking with restrict=on: no other traffic leaves the VM.
#
# STAND-INS, where hardware is missing (no SR-IOV NICs): two "PF" bridges in a fabric netns, each
# with VF-like veth ends in the node's netns (pfa-vf0.., pfb-vf0..), uplinked to a core bridge
# whose address is the peer host; a stand-in device plugin advertising them as the two pools
# through the kubelet's real device-plugin API; and vf-standin, which hands the allocated link to
# Debian's real host-device plugin. Each says so in its own source.
set -euo pipefail
STATE=$(cd "$1" && pwd)
# shellcheck source=/dev/null
. "$STATE/node.env" # NODE_IP NODE_NAME API_HOST API_PORT PROXY_PORT BIN CNI_SRC MULTUS STANDINS ...
LOG=$STATE/logs
mkdir -p "$LOG"
exec >>"$LOG/node.log" 2>&1
started=$SECONDS
say() { echo "node-vm [$((SECONDS - started)) s]: $*"; }
fail() { say "FAILED: $*"; echo "$*" >"$STATE/failed"; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR

wait_for() { # wait_for <seconds> <what> <command...>: poll until the command succeeds
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ ! -e "$STATE/stop" ] || exit 0 # node-down while starting
    ((SECONDS - t0 < limit)) || fail "$what not ready after $limit s"
    sleep 1
  done
  say "$what ready"
}

pids=()
spawn() { # spawn <name> <argv...>: start a daemon with its own log
  local name=$1
  shift
  "$@" >"$LOG/$name.log" 2>&1 &
  pids+=("$!")
  echo "$name $!" >>"$STATE/pids"
}

shutdown() {
  say "stopping"
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  wait || true
  say "stopped"
}
trap shutdown EXIT

# --- the VM as a node: writable state on tmpfs, the guest NIC, kernel modules ---------------------
say "preparing the node"
# containerd's overlayfs snapshotter cannot work on the VM's overlay folders (EINVAL): tmpfs.
for dir in /var/lib/kubelet /var/lib/cni /etc/cni/net.d /opt/cni/bin /run/node; do
  mkdir -p "$dir" && mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
hostname "$NODE_NAME"
nic=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}')
ip link set lo up
ip addr add "$NODE_IP/24" dev "$nic"
ip link set "$nic" up
ip route add default via "${NODE_IP%.*}.2" dev "$nic" # qemu's gateway; restrict=on drops all past it
for mod in bonding br_netfilter overlay veth bridge nf_conntrack virtio_blk ext4; do modprobe "$mod"; done
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
echo "127.0.0.1 localhost" >/etc/hosts
echo "$NODE_IP $NODE_NAME" >>/etc/hosts

# Executables from the host's 9p into guest memory once: 9p reads are slow and uncached.
mkdir -p /run/node/bin
for b in kubelet kube-proxy coredns; do
  cp -L "$BIN/$b" /run/node/bin/
done
export PATH=/run/node/bin:$PATH
cp -L "$CNI_SRC"/* /opt/cni/bin/
cp -L "$MULTUS/multus-shim" /opt/cni/bin/multus-shim
cp -L "$MULTUS/multus-daemon" /run/node/bin/
cp -L "$STANDINS/vf-standin" /opt/cni/bin/vf-standin
cp -L "$STANDINS/sriov-dp-standin" /run/node/bin/

# --- the stand-in SR-IOV fabric -----------------------------------------------------------------
# fabric netns: bridges pfa and pfb (the two PFs' switches), each uplinked to bridge core, where
# the peer host's address lives. Node netns: the VFs pfa-vfN / pfb-vfN, whose peers are ports of
# their PF's bridge; setting such a port down drops the VF's carrier, as a dead switch port would.
say "making the stand-in SR-IOV fabric"
ip netns add fabric
ip -n fabric link set lo up
ip -n fabric link add core type bridge
ip -n fabric addr add "$PEER_CIDR" dev core
ip -n fabric link set core up
for pf in pfa pfb; do
  ip -n fabric link add "$pf" type bridge
  ip -n fabric link add "$pf-up" type veth peer name "core-$pf"
  ip -n fabric link set "$pf-up" master "$pf"
  ip -n fabric link set "core-$pf" master core
  ip -n fabric link set "$pf-up" up
  ip -n fabric link set "core-$pf" up
  ip -n fabric link set "$pf" up
  for ((n = 0; n < VFS; n++)); do
    ip link add "$pf-vf$n" type veth peer name "$pf-p$n" netns fabric
    ip -n fabric link set "$pf-p$n" master "$pf"
    ip -n fabric link set "$pf-p$n" up
  done
done

# --- the way to the host's control plane, and the way back in ------------------------------------
# API_HOST:API_PORT is qemu's guestfwd to the apiserver on the host; tinyproxy is where the
# apiserver's egress selector (HTTP CONNECT, through qemu's hostfwd) comes in to reach the kubelet
# and the pods (see tests/rigs/node.py).
wait_for 120 "the host's apiserver ($API_HOST:$API_PORT)" bash -c "exec 3<>/dev/tcp/$API_HOST/$API_PORT"
spawn tinyproxy tinyproxy -d -c "$STATE/tinyproxy.conf"
spawn coredns coredns -conf "$STATE/Corefile"

# --- runtime and node ---------------------------------------------------------------------------
say "starting containerd"
# Its root arrives whole, as a disk: every image imported and unpacked on the host
# (containerd_seed in tests/rigs/node.py), which in the guest took 14 minutes under TCG.
wait_for 60 "containerd's root disk" blkid -L "$SEED_LABEL"
mkdir -p /var/lib/containerd
mount -t ext4 "$(blkid -L "$SEED_LABEL")" /var/lib/containerd
mkdir -p /etc/containerd
spawn containerd containerd --config "$STATE/containerd.toml"
wait_for 600 containerd ctr version # TCG on a busy machine: can take minutes

# Multus in thick mode, its daemon on the node as its DaemonSet would run it: in-cluster
# configuration (the host's apiserver, its ServiceAccount's files where a pod has them), the pod
# informer filtered to this node. It writes /etc/cni/net.d/00-multus.conf (type multus-shim)
# around the cluster network's config.
cp "$STATE/10-podnet.conflist" /etc/cni/net.d/
sa=/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$sa" && cp "$STATE"/multus-sa/* "$sa/"
KUBERNETES_SERVICE_HOST=$API_HOST KUBERNETES_SERVICE_PORT=$API_PORT MULTUS_NODE_NAME=$NODE_NAME \
  spawn multus-daemon multus-daemon -config "$STATE/multus-daemon.json"
wait_for 300 "Multus' daemon" test -S /run/multus/multus.sock

say "starting kubelet"
spawn kubelet kubelet --config="$STATE/kubelet.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
  --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" \
  --node-labels=feature.node.kubernetes.io/network-sriov.capable=true \
  --container-runtime-endpoint=unix:///run/containerd/containerd.sock --v=1
wait_for 300 "kubelet's device-plugin socket" test -S /var/lib/kubelet/device-plugins/kubelet.sock
spawn kube-proxy kube-proxy --config="$STATE/kube-proxy.yaml" --hostname-override="$NODE_NAME"
pool_a=$(seq -s, -f "pfa-vf%g" 0 $((VFS - 1)))
pool_b=$(seq -s, -f "pfb-vf%g" 0 $((VFS - 1)))
spawn sriov-dp-standin sriov-dp-standin -pool "$POOL_A=$pool_a" -pool "$POOL_B=$pool_b"
say "up (the host waits for the node's Ready condition)"
touch "$STATE/ready"
# The host's `make node-down` asks for a clean stop through this file; the VM has no other
# channel back to the host. (A poll of one file per second, for the rig's whole life.)
until [ -e "$STATE/stop" ]; do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "$(awk -v p="$pid" '$2 == p {print $1}' "$STATE/pids") exited"
  done
  sleep 1
done
