"""What each control-plane process is told: its command line and its kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.rigs.cluster_pki import ClusterPki, KeyPair

SERVICE_CIDR = "10.0.0.0/24"
Ports = dict[str, int]  # etcd-client, etcd-peer and one per served component, all on 127.0.0.1


def kubeconfig(server: str, ca: Path, client: KeyPair, user: str) -> str:
    """A kubeconfig with the CA and client credentials embedded, so it works from any cwd."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "bond-injector",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [
            {"name": "bond-injector", "context": {"cluster": "bond-injector", "user": user}}
        ],
        "current-context": "bond-injector",
    }
    return yaml.safe_dump(config, sort_keys=False)


def etcd_args(state_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd-client']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        "--name=rig",
        f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=rig={peer}",
        "--unsafe-no-fsync",  # a throwaway store: durability buys nothing, fsync costs seconds
        "--log-level=warn",
    ]


def apiserver_args(pki: ClusterPki, ports: Ports) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['kube-apiserver']}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--authorization-mode=Node,RBAC",
        # No kubelet ever clears the not-ready taint this plugin puts on new Nodes, so
        # test Nodes would never be schedulable.
        "--disable-admission-plugins=TaintNodesByCondition",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


# No --authentication/authorization-kubeconfig for the two below: their endpoints serve only
# health checks here, and delegated authn would look for a front-proxy CA the rig lacks.
def controller_manager_args(state_dir: Path, pki: ClusterPki, ports: Ports) -> list[str]:
    config_path = state_dir / "controller-manager.kubeconfig"
    return [
        f"--kubeconfig={config_path}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-controller-manager']}",
        *_serving(pki),
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
        # No kubelets: node lifecycle would taint test Nodes unreachable and evict their pods.
        "--controllers=*,-node-lifecycle-controller,-taint-eviction-controller",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_args(state_dir: Path, pki: ClusterPki, ports: Ports) -> list[str]:
    config_path = state_dir / "scheduler.kubeconfig"
    return [
        f"--kubeconfig={config_path}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-scheduler']}",
        *_serving(pki),
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def _serving(pki: ClusterPki) -> list[str]:
    # The apiserver's cert is valid for 127.0.0.1, so health checks can verify every component.
    return [f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}"]
