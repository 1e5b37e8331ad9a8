# Sourced by the benchmark's VM scripts (bench/cni_vm.sh, bench/cni_cases_vm.sh, bench/failover_vm.sh):
# a state dir in the VM's memory, both plugins copied there, pod netns with two veth legs, the
# same bond configuration for both plugins, and our warm helper. Needs $repo and $peer (the
# bond-cni binary built by bench/peers.py; the host's files are visible read-only over 9p).
set -euo pipefail
state=$(mktemp -d /tmp/bench-cni.XXXXXX)
helper_pid=
netns_made=()
cleanup() {
  [ -z "$helper_pid" ] || kill "$helper_pid" 2>/dev/null || true
  local ns
  for ns in "${netns_made[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$state"
}
trap cleanup EXIT

modprobe bonding
# Both plugins run from the VM's own memory, as from a node's local disk: over 9p each file a
# Python start-up opens costs a round trip to the host, which bin/bond (a one-dir bundle) pays
# hundreds of times and a static Go binary once.
mkdir -p "$state/bin"
cp -a "$repo/bin/bond.d" "$state/bin/bond.d"
ln -s bond.d/bond "$state/bin/bond"
cp "$peer" "$state/bin/bond-cni"
cp /usr/lib/cni/host-local "$state/bin/"

# pod_netns <name>: a pod netns holding the bond's legs, net1 and net2, each a veth whose other
# end (leg1, leg2: the "switch ports") stays in the same netns, up.
pod_netns() {
  ip netns del "$1" 2>/dev/null || true
  ip netns add "$1"
  netns_made+=("$1")
  ip -n "$1" link add net1 type veth peer name leg1
  ip -n "$1" link add net2 type veth peer name leg2
  ip -n "$1" link set leg1 up
  ip -n "$1" link set leg2 up
}

# bond_conf <file> <network name> <subnet> [miimon]: bond-cni's README configuration
# (active-backup, failOverMac 1, mtu 1500), legs already in the pod, host-local IPAM.
bond_conf() {
  cat >"$1" <<CONF
{"cniVersion": "1.0.0", "name": "$2", "type": "bond",
 "mode": "active-backup", "miimon": "${4:-100}", "mtu": 1500, "failOverMac": 1,
 "allSlavesActive": 0, "linksInContainer": true,
 "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "host-local", "subnet": "$3", "dataDir": "$state/ipam-$2"}}
CONF
}

# start_helper: our helper, started once like the node's DaemonSet; its socket appears once warm.
sock=$state/helper.sock
start_helper() {
  "$state/bin/bond" serve --socket "$sock" --cni-path "$state/bin" --log-level DEBUG 2>"$state/helper.log" &
  helper_pid=$!
  local i
  for ((i = 0; i < 3000; i++)); do
    [ -S "$sock" ] && break
    kill -0 "$helper_pid" 2>/dev/null || { cat "$state/helper.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -S "$sock" ] || { echo "bench: the helper did not start in 300 s" >&2; exit 1; }
  echo "bench: $(grep -o 'serving on.*' "$state/helper.log")"
}

# plugin_binary <contender>: helper and bond are bin/bond (through the helper, in process).
plugin_binary() {
  case $1 in
    helper | bond) echo "$state/bin/bond" ;;
    bondcni) echo "$state/bin/bond-cni" ;;
  esac
}
