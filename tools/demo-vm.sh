#!/usr/bin/env bash
# Runs inside the demo VM: plays the node's part of the seed guide with our plugin.
# Two veth pairs stand in for the VFs that SR-IOV CNI would have moved into the pod as net1 and
# net2; their peers sit on a bridge (the switch) with a peer host behind it. bin/bond is then run
# exactly as Multus runs a CNI plugin: CNI_* in the environment, the network config on stdin; it
# hands each call to the node's warm helper (`bond serve`), as on a node where the chart runs it.
# With API_PORT (tools/demo.sh), the node's bond health agent (`bond agent`) runs too and reports
# to the host's API server, reached at 10.0.2.100:API_PORT through qemu's guestfwd: the pod
# test-pod's BondHealthy condition and Events follow the bond as a leg goes down and comes back.
set -euo pipefail
cd "$(dirname "$0")/.."

pod=demo-pod sw=demo-switch peer=demo-peer
helper_dir=/tmp/bond-demo-helper helper_pid= agent_pid= agent_log=/tmp/bond-demo-agent.log
records=/run/bond-cni/demo-attachments
cleanup() {
  [ -z "$helper_pid" ] || kill "$helper_pid" 2>/dev/null || true
  [ -z "$agent_pid" ] || kill "$agent_pid" 2>/dev/null || true
  for ns in "$pod" "$sw" "$peer"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -n "${API_PORT:-}" ]; then
  # qemu's NIC (the only link with a device behind it), on qemu's user network.
  for dev in /sys/class/net/*; do [ -e "$dev/device" ] && nic=${dev##*/}; done
  ip addr add 10.0.2.15/24 dev "$nic"
  ip link set "$nic" up
  kube() { "$KUBECTL" --kubeconfig "$DEMO_DIR/vm.kubeconfig" "$@"; }
  healthy() {
    kube get pod test-pod \
      -o jsonpath='{.status.conditions[?(@.type=="bond-injector.io/BondHealthy")].status}'
  }
  # Waits until the pod's BondHealthy condition is $1, for at most $2 seconds.
  wait_healthy() {
    local deadline=$((SECONDS + $2))
    until [ "$(healthy)" = "$1" ]; do
      kill -0 "$agent_pid" 2>/dev/null || { cat "$agent_log" >&2; exit 1; }
      ((SECONDS < deadline)) || { echo "BondHealthy not $1 within $2 s" >&2; cat "$agent_log" >&2; exit 1; }
      sleep 0.5
    done
    kube get pod test-pod \
      -o jsonpath='{range .status.conditions[?(@.type=="bond-injector.io/BondHealthy")]}test-pod {.type}={.status} ({.reason}: {.message}){"\n"}{end}'
  }
  rm -rf "$records"
  mkdir -p "$records"
  say "the node's bond health agent (the chart's DaemonSet runs it beside the helper): bin/bond agent"
  bin/bond agent --records "$records" --node demo-node --api-server "https://10.0.2.100:$API_PORT" \
    --token-file "$DEMO_DIR/agent-token" --ca-file .cluster/pki/ca.crt \
    --metrics-address 127.0.0.1 --metrics-port 9153 2>"$agent_log" &
  agent_pid=$!
fi

modprobe bonding
ip netns add "$pod"; ip netns add "$sw"; ip netns add "$peer"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
for i in 1 2; do
  ip -n "$pod" link add "net$i" type veth peer name "port$i" netns "$sw"
  ip -n "$sw" link set "port$i" master br0 up
done
ip -n "$peer" link add eth0 type veth peer name uplink netns "$sw"
ip -n "$sw" link set uplink master br0 up
ip -n "$peer" addr add 192.0.2.1/24 dev eth0
ip -n "$peer" link set eth0 up
ip -n "$pod" link set lo up

# The bond NAD's config: BOND_CONF (tools/demo.sh writes it from the chart's NAD), or a default.
state=/tmp/bond-demo-ipam
rm -rf "$state"
if [ -n "${BOND_CONF:-}" ]; then
  conf=$(cat "$BOND_CONF")
else
  conf=$(cat <<EOF
{"cniVersion": "1.1.0", "name": "bond-net", "type": "bond",
 "mode": "active-backup", "failOverMac": 1, "miimon": "100",
 "linksInContainer": true, "links": [{"name": "net1"}, {"name": "net2"}],
 "ipam": {"type": "host-local", "subnet": "192.0.2.0/24", "rangeStart": "192.0.2.10",
          "dataDir": "$state"}}
EOF
)
fi
cni() {
  local t0=${EPOCHREALTIME/./} rc=0
  CNI_COMMAND=$1 CNI_CONTAINERID=demo-container CNI_NETNS=/run/netns/$pod CNI_IFNAME=bond0 \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=test-pod;K8S_POD_UID=${POD_UID:-}" \
    CNI_PATH="$PWD/bin:/usr/lib/cni" BOND_CNI_HELPER_SOCKET="$helper_dir/helper.sock" \
    bin/bond <<<"$conf" || rc=$?
  echo "($1 took $(((${EPOCHREALTIME/./} - t0) / 1000)) ms)" >&2
  return "$rc"
}

say "the node's warm helper (the chart's DaemonSet runs it): bin/bond serve"
rm -rf "$helper_dir"
bin/bond serve --socket "$helper_dir/helper.sock" --cni-path "$PWD/bin:/usr/lib/cni" 2>"$helper_dir.log" &
helper_pid=$!
deadline=$((SECONDS + 600))  # its one Python start-up reads the bundle over 9p: slow in this VM
until [ -S "$helper_dir/helper.sock" ]; do
  kill -0 "$helper_pid" 2>/dev/null || { cat "$helper_dir.log" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "the helper did not start in 600 s" >&2; exit 1; }
  sleep 0.5
done
grep -o 'serving on.*' "$helper_dir.log"

say "CNI ADD (what Multus runs after SR-IOV CNI): the result"
result=$(cni ADD)
echo "$result"
say "ip a inside the pod: bond0 holds the address, net1 and net2 are its slaves"
ip -n "$pod" addr
say "/proc/net/bonding/bond0"
ip netns exec "$pod" cat /proc/net/bonding/bond0
if [ -n "$agent_pid" ]; then
  say "the agent picked up the plugin's attachment record: test-pod's BondHealthy condition"
  ls "$records"
  wait_healthy True 900  # its first Python start-up reads the bundle over 9p: slow in this VM
fi
say "CNI CHECK (the runtime hands the ADD result back as prevResult)"
conf="${conf%\}}, \"prevResult\": $result}"
cni CHECK && echo "CHECK passed: bond0 has its mode, options, slaves and addresses"

say "ping the peer host through the bond"
ip netns exec "$pod" ping -c 2 -W 2 192.0.2.1
active=$(ip netns exec "$pod" awk '/Currently Active Slave/ {print $4}' /proc/net/bonding/bond0)
port=port${active#net}
say "take the active leg's switch port ($port, behind $active) down: the bond fails over"
ip -n "$sw" link set "$port" down
deadline=$((SECONDS + 10))
until [ "$(ip netns exec "$pod" awk '/Currently Active Slave/ {print $4}' /proc/net/bonding/bond0)" != "$active" ]; do
  ((SECONDS < deadline)) || { echo "no failover within 10 s" >&2; exit 1; }
  sleep 0.2
done
ip netns exec "$pod" grep -E 'Currently Active Slave|MII Status' /proc/net/bonding/bond0
ip netns exec "$pod" ping -c 2 -W 2 192.0.2.1
if [ -n "$agent_pid" ]; then
  say "the agent saw it: test-pod's BondHealthy condition turns False (the API server's copy)"
  wait_healthy False 120
  echo "the agent's metrics (http://127.0.0.1:9153/metrics):"
  busybox wget -qO- http://127.0.0.1:9153/metrics | grep -E '^bond_(slaves|slaves_up|degraded|failovers_total|active_slave_info)\{'
  say "bring $port back up: the leg rejoins, BondHealthy turns True again"
  ip -n "$sw" link set "$port" up
  wait_healthy True 120
fi

say "CNI DEL: the bond is gone, the VFs are back as plain links, the lease is released"
cni DEL
ip -n "$pod" -br link
echo "leases left: $(find "$state" -type f -name '192.*' | wc -l)"
say "the helper's log: each call above, answered by a child of the warm process"
grep -E ': (ADD|CHECK|DEL) ' "$helper_dir.log"
if [ -n "$agent_pid" ]; then
  say "the agent's log: what it saw and what it told the API server"
  cat "$agent_log"
  echo "records left: $(find "$records" -type f | wc -l)"
fi
