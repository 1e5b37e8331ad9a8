"""The local control plane's PKI: one CA, the apiserver's serving cert, client certs, the SA key.

EC P-256 keys throughout: they are quick to generate on a loaded machine and every component
(etcd is plain HTTP on loopback, so not involved) accepts them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import pki

SERVICE_IP = "10.0.0.1"  # the first address of the rig's --service-cluster-ip-range
_VALIDITY = datetime.timedelta(days=30)
_APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPki:
    """Every file the control plane's processes and clients are given."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair  # O=system:masters
    controller_manager: KeyPair  # CN=system:kube-controller-manager (bootstrap RBAC binds it)
    scheduler: KeyPair  # CN=system:kube-scheduler
    service_account_key: Path  # signs tokens (controller-manager, apiserver)
    service_account_pub: Path  # verifies them (apiserver)


def _write(directory: Path, stem: str, pair: pki.KeyPair) -> KeyPair:
    files = KeyPair(cert=directory / f"{stem}.crt", key=directory / f"{stem}.key")
    files.cert.write_bytes(pair.cert_pem)
    files.key.write_bytes(pair.key_pem)
    files.key.chmod(0o600)
    return files


def generate_pki(
    directory: Path,
    *,
    service_ip: str = SERVICE_IP,
    extra_ips: tuple[str, ...] = (),
    extra_clients: dict[str, tuple[str, str | None]] | None = None,
) -> ClusterPki:
    """Write a fresh PKI for one control plane into `directory` (created if missing).

    `extra_ips` join the apiserver's SANs (a node's address); `extra_clients` maps a file stem
    to (common name, group) for more client certificates (a kubelet, kube-proxy, Multus).
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.generate_ca("bond-injector-test-ca", now, _VALIDITY)

    def client(stem: str, common_name: str, organization: str | None = None) -> KeyPair:
        pair = pki.issue_certificate(
            ca, common_name, now, _VALIDITY, organization=organization, usage="client"
        )
        return _write(directory, stem, pair)

    serving = pki.issue_certificate(
        ca,
        "kube-apiserver",
        now,
        _VALIDITY,
        dns_names=_APISERVER_DNS_NAMES,
        ips=("127.0.0.1", service_ip, *extra_ips),
        usage="server",
    )
    for stem, (common_name, group) in (extra_clients or {}).items():
        client(stem, common_name, group)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_key_path = directory / "service-account.key"
    sa_key_path.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    sa_key_path.chmod(0o600)
    sa_pub_path = directory / "service-account.pub"
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ClusterPki(
        ca=_write(directory, "ca", ca),
        apiserver=_write(directory, "apiserver", serving),
        admin=client("admin", "bond-injector-admin", "system:masters"),
        controller_manager=client("controller-manager", "system:kube-controller-manager"),
        scheduler=client("scheduler", "system:kube-scheduler"),
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )
