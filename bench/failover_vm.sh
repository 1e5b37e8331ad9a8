#!/usr/bin/env bash
# Runs inside the benchmark VM (bench/cni.py): packets lost when the bond's active leg fails.
# A pod netns with the two legs (net1, net2) bonded by each plugin; their other ends (leg1, leg2:
# the switch ports) on a bridge in a "switch" netns, with a peer host behind it. A steady ping
# (every 10 ms) from the pod to the peer runs while the active leg's switch port goes down and
# later comes back. Prints, per plugin and miimon:
#   failover <plugin> <miimon> <sent> <received> <active before> <active after>
# Usage: failover_vm.sh BOND_CNI_BINARY
set -euo pipefail
peer=$1
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=bench/cni_vm_lib.sh
source bench/cni_vm_lib.sh
start_helper

pod=bench-fo-pod sw=bench-fo-sw host=bench-fo-peer
count=${FAILOVER_PINGS:-600}  # 6 s at 10 ms
network() {
  pod_netns "$pod"
  for n in "$sw" "$host"; do ip netns del "$n" 2>/dev/null || true; ip netns add "$n"; netns_made+=("$n"); done
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  ip -n "$pod" link set leg1 netns "$sw"
  ip -n "$pod" link set leg2 netns "$sw"
  ip -n "$sw" link add uplink type veth peer name eth0 netns "$host"
  for l in leg1 leg2 uplink; do ip -n "$sw" link set "$l" master br0 up; done
  ip -n "$host" addr add 192.0.2.250/24 dev eth0
  ip -n "$host" link set eth0 up
}

active() { ip netns exec "$pod" awk -F': ' '/Currently Active Slave/ {print $2}' /proc/net/bonding/bond0; }

for miimon in 100 10; do
  for plugin in helper bondcni; do
    network
    bond_conf "$state/fo.json" "fo-$plugin" 192.0.2.0/24 "$miimon"
    helper=off
    [ "$plugin" = helper ] && helper=on
    env="BOND_CNI_HELPER=$helper BOND_CNI_HELPER_SOCKET=$sock CNI_CONTAINERID=fo CNI_NETNS=/run/netns/$pod CNI_IFNAME=bond0 CNI_PATH=$state/bin"
    env $env CNI_COMMAND=ADD "$(plugin_binary "$plugin")" <"$state/fo.json" >"$state/out"
    # Until the peer answers (ARP resolved, the bridge has learnt the bond's MAC).
    for ((i = 0; i < 100; i++)); do
      ip netns exec "$pod" ping -c 1 -W 1 192.0.2.250 >/dev/null 2>&1 && break
    done
    before=$(active)
    port=${before/net/leg}
    ip netns exec "$pod" ping -q -i 0.01 -c "$count" -W 1 192.0.2.250 >"$state/ping" 2>&1 &
    ping_pid=$!
    sleep 1.5
    ip -n "$sw" link set "$port" down
    sleep 2
    after=$(active)
    ip -n "$sw" link set "$port" up
    wait "$ping_pid" || true
    read -r sent received < <(awk '/packets transmitted/ {print $1, $4}' "$state/ping") || {
      sent='?' received='?'
      echo "bench: ping printed no summary: $(tr '\n' ' ' <"$state/ping")" >&2
    }
    echo "failover $plugin $miimon $sent $received $before $after"
    env $env CNI_COMMAND=DEL "$(plugin_binary "$plugin")" <"$state/fo.json" >"$state/out"
  done
done
echo "bench: failover done"
