#!/usr/bin/env bash
# Runs inside the benchmark VM (bench/cni.py): the same behaviour cases through bin/bond (via its
# warm helper, as the chart runs it) and bond-cni, and what each leaves behind. Prints one line
# per case and plugin:
#   case|<case>|<plugin>|<exit codes of the steps>|<CNI error code>|<error message>|<left behind>
# Usage: cni_cases_vm.sh BOND_CNI_BINARY
set -euo pipefail
peer=$1
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=bench/cni_vm_lib.sh
source bench/cni_vm_lib.sh
start_helper

ns=bench-case
# call <plugin> <command> <conf file>: one CNI call into $ns; sets $rc, output in $state/out.
call() {
  local helper=off
  [ "$1" = helper ] && helper=on
  rc=0
  BOND_CNI_HELPER=$helper BOND_CNI_HELPER_SOCKET=$sock CNI_COMMAND=$2 CNI_CONTAINERID=case \
    CNI_NETNS=/run/netns/$ns CNI_IFNAME=bond0 CNI_PATH="$state/bin" \
    "$(plugin_binary "$1")" <"$3" >"$state/out" 2>"$state/err" || rc=$?
}

# left_behind <network name>: bonds and enslaved legs in the pod netns, and host-local leases.
left_behind() {
  local parts=() bonds slaves leases
  if ip netns list | grep -qw "$ns"; then
    bonds=$(ip -n "$ns" -o link show type bond 2>/dev/null | awk -F': ' '{print $2}' | tr '\n' ' ')
    slaves=$(ip -n "$ns" -o link show 2>/dev/null | awk -F': ' '/ master /{split($2, a, "@"); print a[1]}' | tr '\n' ' ')
    [ -z "$bonds" ] || parts+=("bond: ${bonds% }")
    [ -z "$slaves" ] || parts+=("enslaved: ${slaves% }")
  fi
  leases=$(find "$state/ipam-$1" -type f ! -name lock ! -name 'last_reserved_ip*' 2>/dev/null | wc -l)
  [ "$leases" = 0 ] || parts+=("$leases IP lease(s)")
  local IFS=','
  echo "${parts[*]:-nothing}"
}

# report <case> <plugin> <rcs> <network name>: the case line, from the last call's output.
report() {
  local code msg
  code=$(grep -o '"code": *[0-9]*' "$state/out" | head -1 | grep -o '[0-9]*$' || true)
  msg=$(tr '\n' ' ' <"$state/out" | grep -o '"msg": *"[^"]*"' | head -1 | cut -d'"' -f4 | cut -c1-140 || true)
  [ -n "$msg" ] || msg=$(tr '\n' ' ' <"$state/err" | cut -c1-140)
  echo "case|$1|$2|$3|${code:--}|${msg:--}|$(left_behind "$4")"
}

# conf <file> <network> <python expression editing dict c>: the standard config, edited.
conf() {
  bond_conf "$1" "$2" 203.0.113.0/24
  python3 - "$1" "$3" <<'PY'
import json, sys
path, edit = sys.argv[1], sys.argv[2]
c = json.load(open(path))
exec(edit)
json.dump(c, open(path, "w"))
PY
}

# fresh: a new pod netns with both legs; no leases.
fresh() {
  pod_netns "$ns"
  rm -rf "$state"/ipam-*
}

for plugin in helper bondcni; do
  net=case-$plugin
  good=$state/good-$plugin.json
  conf "$good" "$net" "pass"

  fresh; call "$plugin" ADD "$good"; a=$rc; cp "$state/out" "$state/added"
  call "$plugin" DEL "$good"; report "ADD then DEL (good config)" "$plugin" "$a,$rc" "$net"

  for bad in 'c["mode"]="bogus"' 'c["miimon"]="often"' 'c["links"]=[]' 'del c["links"]' \
    'c["links"]=[{"name":"net1"}]' 'c["mtu"]=100000' 'c["cniVersion"]="9.9.9"'; do
    fresh; conf "$state/bad.json" "$net" "$bad"
    call "$plugin" ADD "$state/bad.json"; report "bad config: $bad" "$plugin" "$rc" "$net"
  done

  fresh; echo '{"cniVersion": "1.0.0", "name": ' >"$state/bad.json"
  call "$plugin" ADD "$state/bad.json"; report "malformed JSON" "$plugin" "$rc" "$net"

  fresh; conf "$state/bad.json" "$net" 'c["links"]=[{"name":"net1"},{"name":"net3"}]'
  call "$plugin" ADD "$state/bad.json"; report "a leg missing (net3)" "$plugin" "$rc" "$net"

  fresh; conf "$state/bad.json" "$net" 'c["ipam"]["subnet"]="203.0.113.0/33"'
  call "$plugin" ADD "$state/bad.json"; report "IPAM failing (bad subnet)" "$plugin" "$rc" "$net"

  fresh; conf "$state/bad.json" "$net" 'c["ipam"]["type"]="no-such-ipam"'
  call "$plugin" ADD "$state/bad.json"; report "IPAM plugin missing" "$plugin" "$rc" "$net"

  fresh; call "$plugin" ADD "$good"; a=$rc; ip netns del "$ns"
  call "$plugin" DEL "$good"; report "DEL after the netns is gone" "$plugin" "$a,$rc" "$net"

  fresh; call "$plugin" ADD "$good"; a=$rc; d=
  call "$plugin" DEL "$good"; d=$rc; call "$plugin" DEL "$good"
  report "DEL twice" "$plugin" "$a,$d,$rc" "$net"

  fresh; call "$plugin" ADD "$good"; a=$rc
  conf "$state/check.json" "$net" "c['prevResult']=json.load(open('$state/out'))"
  call "$plugin" CHECK "$state/check.json"; c=$rc
  report "CHECK after ADD" "$plugin" "$a,$c" "$net"
  ip -n "$ns" link del net2 || true
  call "$plugin" CHECK "$state/check.json"; report "CHECK after a leg is deleted" "$plugin" "$rc" "$net"
  call "$plugin" DEL "$good"; report "DEL after a leg is deleted" "$plugin" "$rc" "$net"

  fresh; call "$plugin" ADD "$good"; a=$rc; call "$plugin" ADD "$good"
  report "ADD twice (bond0 exists)" "$plugin" "$a,$rc" "$net"
  call "$plugin" DEL "$good"
done
echo "bench: cases done"
