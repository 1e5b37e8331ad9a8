#!/usr/bin/env bash
# make demo-node: the seed guide on a real node, as a user runs it.
#  1. one node in a VM (make node-up): control plane, containerd, kubelet, Multus, the stand-in
#     SR-IOV pools (veth "VFs" on two bridges "PFs"; no SR-IOV NICs here);
#  2. helm install of charts/bond-injector with the images `make images` built;
#  3. kubectl apply of the seed guide's pod with only the label bond=true; Running;
#  4. kubectl exec test-pod -- ip a: bond0 over net1 and net2, as the guide shows it; a ping
#     through it while the active leg's switch port goes down;
#  5. kubectl delete pod: the VFs are back on the node, no lease left.
# Set DEMO_KEEP=1 to leave the node up afterwards (make node-down stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export KUBECONFIG=$PWD/.cluster/kubeconfig
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
node_sh() { kubectl -n kube-system exec node-shell -- chroot /host sh -c "$*"; }

[ "${DEMO_KEEP:-0}" = 1 ] || trap '$PY -m tests.rigs.node down >/dev/null 2>&1 || true' EXIT

say "1. one node in a VM: kubelet, containerd, Multus (under TCG this takes minutes)"
$PY -m tests.rigs.node up
kubectl get nodes -o wide
kubectl get node bond-node -o jsonpath='{.status.allocatable}' | $PY -m json.tool

say "2. helm install charts/bond-injector (hook Jobs make the certificates)"
$PY -m tests.rigs.node install
kubectl -n bond-injector get deploy,ds,pods

say "3. kubectl apply the seed's pod: only the label bond=true"
kubectl apply -f examples/seed-pod.yaml
kubectl wait --for=condition=Ready pod/test-pod --timeout=900s
kubectl get pod test-pod -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/networks}'; echo

say "4. kubectl exec -it test-pod -- ip a"
kubectl exec test-pod -- ip a
active=$(kubectl exec test-pod -- cat /sys/class/net/bond0/bonding/active_slave)
vf=$(kubectl exec test-pod -- cat "/sys/class/net/$active/ifalias")
echo "active leg: $active (node VF $vf)"
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: node-shell, namespace: kube-system}
spec:
  nodeName: bond-node
  hostNetwork: true
  hostPID: true
  tolerations: [{operator: Exists}]
  containers:
  - {name: shell, image: docker.io/library/alpine:latest, imagePullPolicy: IfNotPresent,
     command: [sleep, "100000"], securityContext: {privileged: true},
     volumeMounts: [{name: host, mountPath: /host}]}
  volumes: [{name: host, hostPath: {path: /}}]
YAML
kubectl -n kube-system wait --for=condition=Ready pod/node-shell --timeout=600s >/dev/null
say "   ping the peer through bond0 while $vf's switch port goes down"
kubectl exec test-pod -- ping -c 30 -i 0.2 10.56.217.1 | tail -3 &
ping_pid=$!
node_sh "ip netns exec fabric ip link set ${vf/-vf/-p} down"
wait $ping_pid
kubectl exec test-pod -- cat /sys/class/net/bond0/bonding/active_slave
node_sh "ip netns exec fabric ip link set ${vf/-vf/-p} up"

say "5. kubectl delete pod test-pod: the VFs go home, the lease is released"
kubectl delete pod test-pod --wait=true --timeout=600s
node_sh "ip -br link | grep -e pfa-vf -e pfb-vf; ls /var/lib/cni/networks/bond-net"
say "done: label -> webhook -> scheduler and device plugin -> Multus -> bond0, on a real kubelet"
