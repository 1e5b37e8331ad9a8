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
demo=.cache/demo
mkdir -p "$demo"
# The NAD's own config; only its IPAM range is moved to the documentation range used in the VM,
# and the plugin's attachment records to a folder of the demo's own (the agent watches it).
kubectl get network-attachment-definitions bond-net -n bond-injector -o jsonpath='{.spec.config}' \
  | $PY -c '
import json, sys
conf = json.load(sys.stdin)
conf["ipam"] = {"type": "host-local", "subnet": "192.0.2.0/24", "rangeStart": "192.0.2.10",
                "dataDir": "/tmp/bond-demo-ipam"}
conf["attachmentsDir"] = "/run/bond-cni/demo-attachments"
print(json.dumps(conf))' > "$demo/bond-net.json"
echo "bond NAD config: $(cat "$demo/bond-net.json")"

# The node's bond health agent reports to this control plane from inside the VM, with the
# chart's own agent ClusterRole (create events, patch pods/status) and a ServiceAccount token.
say "   the bond health agent's identity: the chart's agent RBAC, a ServiceAccount token"
helm template bond-injector charts/bond-injector -n bond-injector \
  --set cniInstaller.enabled=true --set cniInstaller.agent.enabled=true \
  -s templates/cni-installer-serviceaccount.yaml -s templates/agent-clusterrole.yaml \
  -s templates/agent-clusterrolebinding.yaml | kubectl apply -f -
kubectl create token bond-injector-cni-installer -n bond-injector --duration=1h > "$demo/agent-token"
api_port=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' | sed 's/.*://')
# The VM's kubectl: the same admin credentials, the API at the address the VM reaches it at.
kubectl config view --raw --minify \
  | sed "s#server: https://127.0.0.1:#server: https://10.0.2.100:#" > "$demo/vm.kubeconfig"
uid=$(kubectl get pod test-pod -o jsonpath='{.metadata.uid}')
$PY -m tests.rigs.vm --api-port "$api_port" --timeout 2400 \
  "BOND_CONF=$demo/bond-net.json API_PORT=$api_port POD_UID=$uid DEMO_DIR=$demo KUBECTL=$(command -v kubectl) tools/demo-vm.sh"
say "   what the API server now holds for test-pod: the agent's Events and its BondHealthy condition"
kubectl get events --field-selector involvedObject.name=test-pod,source=bond-injector-agent \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
kubectl get pod test-pod \
  -o jsonpath='{range .status.conditions[?(@.type=="bond-injector.io/BondHealthy")]}{.type}={.status} ({.reason}: {.message}){"\n"}{end}'
say "done: labelled pod -> annotation + one VF per NIC -> bond0 over net1 and net2, failover shown,"
echo "      and the pod's BondHealthy condition followed the bond (False with a leg down, True again)"
