"""Reading kubeconfigs and the pod's service account: what kubectl users have, and clear
refusals of what bond-injector does not do (plugins, basic auth, impersonation)."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs import pki
from certs.cli import main as certs_main
from webhook.cli import main as cli_main
from webhook.kubeconfig import KubeConfigError, in_cluster, load_kubeconfig

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
CA = pki.generate_ca("test-ca", NOW, DAY)
CLIENT = pki.generate_serving(CA, ["admin"], [], NOW, DAY)  # any key pair does for a client
OTHER = pki.generate_serving(CA, ["other"], [], NOW, DAY)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write(tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "dev",
        "contexts": [
            {"name": "dev", "context": {"cluster": "rig", "user": "alice", "namespace": "team"}},
            {"name": "other", "context": {"cluster": "rig", "user": "bob"}},
        ],
        "clusters": [
            {
                "name": "rig",
                "cluster": cluster
                or {
                    "server": "https://127.0.0.1:6443",
                    "certificate-authority-data": _b64(CA.cert_pem),
                },
            }
        ],
        "users": [{"name": "alice", "user": user}, {"name": "bob", "user": {"token": "bob"}}],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_client_pair_from_data_and_the_context_namespace(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"client-certificate-data": _b64(CLIENT.cert_pem), "client-key-data": _b64(CLIENT.key_pem)},
    )
    access = load_kubeconfig(path)
    assert access.server == "https://127.0.0.1:6443"
    assert access.namespace == "team"
    assert access.authorization() is None
    assert access.tls is not None and access.tls.verify_mode == ssl.CERT_REQUIRED
    serials = [int(str(c["serialNumber"]), 16) for c in access.tls.get_ca_certs()]
    assert serials == [_serial(CA.cert_pem)]


def _serial(pem: bytes) -> int:
    """As a number: ssl writes it in whole hex bytes (a leading 0 one time in 16)."""
    from cryptography import x509  # noqa: PLC0415

    return x509.load_pem_x509_certificate(pem).serial_number


def test_files_are_relative_to_the_kubeconfig_and_the_token_file_is_read_each_time(
    tmp_path: Path,
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "pki" / "client.crt").write_bytes(CLIENT.cert_pem)
    (tmp_path / "pki" / "client.key").write_bytes(CLIENT.key_pem)
    (tmp_path / "token").write_text("first\n")
    path = _write(
        tmp_path,
        {
            "client-certificate": "pki/client.crt",
            "client-key": "pki/client.key",
            "tokenFile": "token",
            "token": "static",
        },
        {"server": "https://rig.example:6443/", "certificate-authority": "pki/ca.crt"},
    )
    access = load_kubeconfig(path)
    assert access.server == "https://rig.example:6443"
    assert access.authorization() == "Bearer first"
    (tmp_path / "token").write_text("rotated")
    assert access.authorization() == "Bearer rotated"
    (tmp_path / "token").unlink()
    with pytest.raises(KubeConfigError, match=r"cannot read the token file .*token"):
        access.authorization()


def test_another_context_and_its_token(tmp_path: Path) -> None:
    access = load_kubeconfig(_write(tmp_path, {"token": "alice"}), "other")
    assert access.authorization() == "Bearer bob"
    assert access.namespace is None
    assert access.source == f"kubeconfig {tmp_path / 'config'}, context other"


def test_insecure_skip_tls_verify_and_tls_server_name(tmp_path: Path) -> None:
    cluster = {
        "server": "https://10.0.0.1:6443",
        "insecure-skip-tls-verify": True,
        "tls-server-name": "kubernetes.default",
    }
    access = load_kubeconfig(_write(tmp_path, {"token": "t"}, cluster))
    assert access.tls is not None and access.tls.verify_mode == ssl.CERT_NONE
    assert access.server_name == "kubernetes.default"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
            r"user alice runs a command for its credentials \(an `exec` plugin\): aws, which "
            r"bond-injector does not run; use a kubeconfig whose user has a token",
        ),
        (
            {"auth-provider": {"name": "oidc"}},
            r"user alice gets its credentials from an `auth-provider` plugin: oidc, which",
        ),
        (
            {"username": "admin", "password": "secret"},
            r"user alice: `username` is set, for basic authentication \(Kubernetes removed it in "
            r"1\.19\), which bond-injector does not support",
        ),
        ({"token": "t", "as": "root"}, r"user alice: `as` is set, for impersonation, which"),
        (
            {"client-certificate-data": _b64(CLIENT.cert_pem)},
            r"user alice: client-key\(-data\) is missing",
        ),
        (
            {
                "client-certificate-data": _b64(CLIENT.cert_pem),
                "client-key-data": _b64(OTHER.key_pem),
            },
            r"user alice: the client certificate and key do not load",
        ),
        (
            {"client-certificate-data": "not base64!"},
            r"user alice: client-certificate-data is not base64",
        ),
        ({"client-certificate": "missing.crt"}, r"user alice: client-certificate .*missing\.crt"),
    ],
)
def test_what_is_refused_names_the_user_and_the_field(
    tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeConfigError, match=message):
        load_kubeconfig(_write(tmp_path, user))


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (
            {"server": "rig:6443"},
            r"cluster rig: server 'rig:6443' is not an https:// or http:// URL",
        ),
        (
            {"server": "https://rig", "proxy-url": "http://proxy:3128"},
            r"cluster rig: proxy-url is not supported",
        ),
        (
            {"server": "https://rig", "certificate-authority-data": "%%%"},
            r"cluster rig: certificate-authority-data is not base64",
        ),
    ],
)
def test_cluster_fields_that_cannot_be_used(
    tmp_path: Path, cluster: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeConfigError, match=message):
        load_kubeconfig(_write(tmp_path, {"token": "t"}, cluster))


def test_contexts_that_do_not_exist(tmp_path: Path) -> None:
    path = _write(tmp_path, {"token": "t"})
    with pytest.raises(
        KubeConfigError, match=r"has no context named 'prod' \(it has: dev, other\)"
    ):
        load_kubeconfig(path, "prod")
    doc = yaml.safe_load(path.read_text())
    del doc["current-context"]
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(
        KubeConfigError, match=r"has no current-context; pass --context \(it has: dev"
    ):
        load_kubeconfig(path)
    with pytest.raises(KubeConfigError, match=r"kubeconfig .*nowhere: No such file"):
        load_kubeconfig(tmp_path / "nowhere")


def test_in_cluster_from_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("projected-1")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "namespace").write_text("bond-injector")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster(tmp_path, env)
    assert access.server == "https://[fd00::1]:443"
    assert access.namespace == "bond-injector"
    assert access.authorization() == "Bearer projected-1"
    (tmp_path / "token").write_text("projected-2")  # the kubelet rotates it
    assert access.authorization() == "Bearer projected-2"


def test_in_cluster_without_a_pod_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(
        KubeConfigError, match=r"KUBERNETES_SERVICE_HOST/PORT are not set .*--kubeconfig"
    ):
        in_cluster(tmp_path, {})
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(
        KubeConfigError, match=r"token does not exist; mount the ServiceAccount token"
    ):
        in_cluster(tmp_path, env)


def test_the_commands_print_the_refusal_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, {"exec": {"command": "gke-gcloud-auth-plugin"}})
    assert cli_main(["doctor", "--kubeconfig", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bond-injector doctor: kubeconfig {path}, user alice runs a command")
    args = ["ensure", "--kubeconfig", str(path), "--secret", "s", "--service", "wh"]
    assert certs_main(args) == 2
    assert f"certs: kubeconfig {path}, user alice runs a command" in capsys.readouterr().err
