"""network-resources-injector against the cluster rig, the way its deployment runs it.

It reads only in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT, and a ServiceAccount token
and CA under /var/run/secrets/kubernetes.io/serviceaccount. That path is never written on the
host: the injector runs in a private mount namespace (`unshare -m`) with a tmpfs over /run (where
/var/run points) and the rig's token and CA bind-mounted at that path. Its flags are those of its
deployment (`-logtostderr`), plus `-insecure` (no client certificates: the bench's load generator
has none) and loopback ports.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.rigs.cluster import Cluster

NAMESPACE = "kube-system"  # where its deployment runs; it reads its control-switch ConfigMap here
ACCOUNT = "network-resources-injector"
SA_PATH = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run -> /run here

# What it needs from the API server: its NAD informer and API fallback, its ConfigMap poll.
_RBAC = [
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": NAMESPACE},
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ACCOUNT},
        "rules": [
            {
                "apiGroups": ["k8s.cni.cncf.io"],
                "resources": ["network-attachment-definitions"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ACCOUNT},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": ACCOUNT,
        },
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
    },
]


def service_account(cluster: Cluster, directory: Path) -> Path:
    """The injector's account in the rig; its token, CA and namespace as a pod would see them."""
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": _RBAC})
    )
    token = cluster.kubectl(
        "-n", NAMESPACE, "create", "token", ACCOUNT, "--duration", "2h"
    ).stdout.strip()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    (directory / "namespace").write_text(NAMESPACE)
    return directory


def argv(binary: Path, sa_dir: Path, pki: Path, *, port: int, health_port: int) -> list[str]:
    """The command line: a private mount namespace around the injector's own flags."""
    script = (
        'set -e; mount -t tmpfs tmpfs /run; mkdir -p "$1"; mount --bind "$2" "$1"; '
        'shift 2; exec "$@"'
    )
    return [
        "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", SA_PATH,
        str(sa_dir), str(binary), "-bind-address=127.0.0.1", f"-port={port}",
        f"-health-check-port={health_port}", f"-tls-cert-file={pki / 'tls.crt'}",
        f"-tls-private-key-file={pki / 'tls.key'}", "-insecure", "-logtostderr",
    ]  # fmt: skip


def environment(cluster: Cluster) -> dict[str, str]:
    """In-cluster configuration pointing at the rig's API server."""
    return {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cluster.ports["kube-apiserver"]),
        "NAMESPACE": NAMESPACE,
    }
