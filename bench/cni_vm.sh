#!/usr/bin/env bash
# Runs inside the benchmark VM (bench/cni.py): N timed ADD+DEL rounds of bin/bond through its warm
# helper ("helper"), of bin/bond in process ("bond", BOND_CNI_HELPER=off) and of Debian's Go `vlan`
# plugin, all with host-local IPAM, then N timed VERSION calls of each.
# Times come from bash's $EPOCHREALTIME (no process is started to read the clock: each exec costs
# tens of milliseconds under TCG). Prints `time <plugin> <command> <microseconds>` lines.
set -euo pipefail
n=${1:-10}
cd "$(dirname "$0")/.."
repo=$PWD

bond_ns=bench-bond vlan_ns=bench-vlan master=bench-master
state=$(mktemp -d /tmp/bench-cni.XXXXXX)
helper_pid=
cleanup() {
  [ -z "$helper_pid" ] || kill "$helper_pid" 2>/dev/null || true
  ip netns del "$bond_ns" 2>/dev/null || true
  ip netns del "$vlan_ns" 2>/dev/null || true
  ip link del "$master" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT

modprobe bonding
# Both plugins run from the VM's own memory, as from a node's local disk: over 9p each file a
# Python start-up opens costs a round trip to the host, which bin/bond (a one-dir bundle) pays
# hundreds of times and a static Go binary once.
echo "bench: state on $(stat -f -c %T "$state")"
mkdir -p "$state/bin"
cp -a "$repo/bin/bond.d" "$state/bin/bond.d"
ln -s bond.d/bond "$state/bin/bond"
cp /usr/lib/cni/vlan /usr/lib/cni/host-local "$state/bin/"
ip netns add "$bond_ns"
ip netns add "$vlan_ns"
# The bond's legs: two veth pairs in the pod netns (as SR-IOV CNI would have left two VFs there).
ip -n "$bond_ns" link add net1 type veth peer name leg1
ip -n "$bond_ns" link add net2 type veth peer name leg2
# vlan's master in the node's netns.
ip link add "$master" type dummy
ip link set "$master" up

cat >"$state/bond.json" <<CONF
{"cniVersion": "1.0.0", "name": "bench-bond", "type": "bond",
 "mode": "active-backup", "failOverMac": 1, "miimon": "100", "linksInContainer": true,
 "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "host-local", "subnet": "192.0.2.0/24", "dataDir": "$state/ipam-bond"}}
CONF
cat >"$state/vlan.json" <<CONF
{"cniVersion": "1.0.0", "name": "bench-vlan", "type": "vlan", "master": "$master", "vlanId": 100,
 "ipam": {"type": "host-local", "subnet": "198.51.100.0/24", "dataDir": "$state/ipam-vlan"}}
CONF

# The helper, started once like the node's DaemonSet would; its socket appears once it is warm.
sock=$state/helper.sock
"$state/bin/bond" serve --socket "$sock" --cni-path "$state/bin" --log-level DEBUG 2>"$state/helper.log" &
helper_pid=$!
for ((i = 0; i < 3000; i++)); do
  [ -S "$sock" ] && break
  kill -0 "$helper_pid" 2>/dev/null || { cat "$state/helper.log" >&2; exit 1; }
  sleep 0.1
done
[ -S "$sock" ] || { echo "bench: the helper did not start in 300 s" >&2; exit 1; }
echo "bench: $(grep -o 'serving on.*' "$state/helper.log")"

# cni <plugin> <command> <netns> <ifname> <round>: run one command (the caller's $binary and
# $helper mode), output to a file, not captured with $(...): a subshell is one more fork inside
# the timed span.
cni() {
  local conf=$1
  [ "$1" = helper ] && conf=bond
  if ! BOND_CNI_HELPER=$helper BOND_CNI_HELPER_SOCKET=$sock CNI_COMMAND=$2 CNI_CONTAINERID=bench-$5 CNI_NETNS=/run/netns/$3 CNI_IFNAME=$4 \
    CNI_PATH="$state/bin" "$binary" <"$state/$conf.json" >"$state/out" 2>&1; then
    echo "bench: $1 $2 failed: $(cat "$state/out")" >&2
    exit 1
  fi
}

# round <plugin> <binary> <netns> <ifname> <i>: one timed ADD then DEL.
round() {
  local t0 t1 t2 binary=$2 helper=off
  [ "$1" = helper ] && helper=on
  t0=${EPOCHREALTIME/./}
  cni "$1" ADD "$3" "$4" "$5"
  t1=${EPOCHREALTIME/./}
  cni "$1" DEL "$3" "$4" "$5"
  t2=${EPOCHREALTIME/./}
  echo "time $1 ADD $((t1 - t0))"
  echo "time $1 DEL $((t2 - t1))"
}

# version <plugin> <binary>: one timed VERSION.
version() {
  local t0 t1 helper=off
  [ "$1" = helper ] && helper=on
  t0=${EPOCHREALTIME/./}
  BOND_CNI_HELPER=$helper BOND_CNI_HELPER_SOCKET=$sock CNI_COMMAND=VERSION "$2" </dev/null >/dev/null
  t1=${EPOCHREALTIME/./}
  echo "time $1 VERSION $((t1 - t0))"
}

bond=("$state/bin/bond" "$bond_ns" bond0)
vlan=("$state/bin/vlan" "$vlan_ns" vlan0)
# One untimed warm-up round each, then the plugins alternate, so that a burst of load on the
# shared host falls on both rather than on whichever ran at the time.
round helper "${bond[@]}" 0 >/dev/null
round bond "${bond[@]}" 0 >/dev/null
round vlan "${vlan[@]}" 0 >/dev/null
for ((i = 1; i <= n; i++)); do
  round helper "${bond[@]}" "$i"
  round bond "${bond[@]}" "$i"
  round vlan "${vlan[@]}" "$i"
done
for ((i = 1; i <= n; i++)); do
  version helper "${bond[0]}"
  version bond "${bond[0]}"
  version vlan "${vlan[0]}"
done
served=$(grep -c ': exit 0 in' "$state/helper.log" || true)
lazy=$(grep -c 'imported after preload' "$state/helper.log" || true)
echo "bench: the helper answered $served requests; $lazy of them imported a module after preload"
grep 'imported after preload' "$state/helper.log" | head -3 || true
echo "bench: done"
