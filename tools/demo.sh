#!/usr/bin/env bash
# make demo: bond-injector's main job end to end on this one machine.
#  1. a real control plane with the chart installed and the webhook running (make dev-up);
#  2. `kubectl apply` of the seed guide's pod with only the label bond=true: the stored pod has the
#     three attachments and one VF of each PF pool;
#  3. the node's part in a VM whose kernel can bond: bin/bond, run as Multus runs it with the bond
#     NAD the chart installed, bonds net1 and net2 into bond0, pings through it and fails over.
# Set DEMO_KEEP=1 to leave the control plane up afterwards (make dev-down stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export KUBECONFIG=$PWD/.cluster/kubeconfig
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ "${DEMO_KEEP:-0}" = 1 ] || trap '$PY -m tests.rigs.dev down >/dev/null 2>&1 || true' EXIT

say "1. the control plane, the webhook and helm install of charts/bond-injector (make dev-up)"
$PY -m tests.rigs.dev up
helm list -n bond-injector
kubectl get network-attachment-definitions -n bond-injector

say "2. kubectl apply the seed's pod spec: the label bond=true, no annotation, no SR-IOV resources"
kubectl delete pod test-pod --ignore-not-found --wait=false >/dev/null
kubectl apply -f examples/seed-pod.yaml
say "   what the API server stored: the networks annotation the webhook wrote"
kubectl get pod test-pod -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/networks}' \
  | $PY -m json.tool
say "   and one VF of each PF pool, requests = limits"
kubectl get pod test-pod -o jsonpath='{.spec.containers[0].resources}' | $PY -m json.tool

say "3. the node's part, in a VM with Debian's kernel (bonding): bin/bond with the chart's bond NAD"
mkdir -p .cache/demo
# The NAD's own config; only its IPAM range is moved to the documentation range used in the VM.
kubectl get network-attachment-definitions bond-net -n bond-injector -o jsonpath='{.spec.config}' \
  | $PY -c '
import json, sys
conf = json.load(sys.stdin)
conf["ipam"] = {"type": "host-local", "subnet": "192.0.2.0/24", "rangeStart": "192.0.2.10",
                "dataDir": "/tmp/bond-demo-ipam"}
print(json.dumps(conf))' > .cache/demo/bond-net.json
echo "bond NAD config: $(cat .cache/demo/bond-net.json)"
$PY -m tests.rigs.vm "BOND_CONF=.cache/demo/bond-net.json tools/demo-vm.sh"
say "done: labelled pod -> annotation + one VF per NIC -> bond0 over net1 and net2, failover shown"
