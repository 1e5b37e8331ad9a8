#!/usr/bin/env bash
# Runs inside the benchmark VM (bench/cni.py): N timed ADD+DEL rounds of bin/bond through its warm
# helper ("helper"), of bin/bond in process ("bond", BOND_CNI_HELPER=off) and of bond-cni built
# from its source ("bondcni"), the same bond configuration and host-local IPAM for all, then N
# timed VERSION calls of each.
# Times come from bash's $EPOCHREALTIME (no process is started to read the clock: each exec costs
# tens of milliseconds under TCG). Prints `time <plugin> <command> <microseconds>` lines.
# Usage: cni_vm.sh N BOND_CNI_BINARY
set -euo pipefail
n=${1:-10}
peer=$2
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=bench/cni_vm_lib.sh
source bench/cni_vm_lib.sh
echo "bench: state on $(stat -f -c %T "$state")"

bond_ns=bench-bond peer_ns=bench-peer
pod_netns "$bond_ns"
pod_netns "$peer_ns"
bond_conf "$state/bond.json" bench-bond 192.0.2.0/24
bond_conf "$state/bondcni.json" bench-bondcni 198.51.100.0/24
start_helper

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
bondcni=("$state/bin/bond-cni" "$peer_ns" bond0)
# One untimed warm-up round each, then the plugins alternate, so that a burst of load on the
# shared host falls on both rather than on whichever ran at the time.
round helper "${bond[@]}" 0 >/dev/null
round bond "${bond[@]}" 0 >/dev/null
round bondcni "${bondcni[@]}" 0 >/dev/null
for ((i = 1; i <= n; i++)); do
  round helper "${bond[@]}" "$i"
  round bond "${bond[@]}" "$i"
  round bondcni "${bondcni[@]}" "$i"
done
for ((i = 1; i <= (n < 20 ? n : 20); i++)); do
  version helper "${bond[0]}"
  version bond "${bond[0]}"
  version bondcni "${bondcni[0]}"
done
served=$(grep -c ': exit 0 in' "$state/helper.log" || true)
lazy=$(grep -c 'imported after preload' "$state/helper.log" || true)
echo "bench: the helper answered $served requests; $lazy of them imported a module after preload"
grep 'imported after preload' "$state/helper.log" | head -3 || true
echo "bench: done"
