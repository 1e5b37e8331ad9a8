"""`certs ensure` / `rotate` against a real kube-apiserver: Secrets, re-runs, caBundle patches."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import kube, pki
from certs.cli import main
from tests.rigs.cluster import Cluster
from webhook.kubeapi import KubeClient, connect

pytestmark = pytest.mark.cluster

DAY = dt.timedelta(days=1)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"certs-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def api(cluster: Cluster) -> Iterator[KubeClient]:
    with connect(cluster.kubeconfig) as client:
        yield client


@pytest.fixture
def webhook_config(cluster: Cluster) -> Iterator[str]:
    """A MutatingWebhookConfiguration with two webhooks and no caBundle yet."""
    name = f"certs-test-{secrets.token_hex(3)}"
    hook = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }
        ],
        # Matches no pod: the test must not disturb anything else on the shared control plane.
        "objectSelector": {"matchLabels": {"certs-test": name}},
        "failurePolicy": "Ignore",
    }
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {**hook, "name": "a.certs.test", "clientConfig": {"url": "https://127.0.0.1:1/a"}},
            {**hook, "name": "b.certs.test", "clientConfig": {"url": "https://127.0.0.1:1/b"}},
        ],
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(config))
    yield name
    cluster.kubectl("delete", "mutatingwebhookconfiguration", name)


def _policy(namespace: str, **kw: object) -> kube.Policy:
    names = tuple(pki.service_dns_names("wh", namespace))
    return kube.Policy(dns_names=names, **kw)  # type: ignore[arg-type]


def _secret(cluster: Cluster, namespace: str, name: str) -> dict[str, object]:
    out = cluster.kubectl("-n", namespace, "get", "secret", name, "-o", "json").stdout
    secret: dict[str, object] = json.loads(out)
    return secret


def _data(secret: dict[str, object], key: str) -> bytes:
    data = secret["data"]
    assert isinstance(data, dict)
    return base64.b64decode(data[key])


def _rv(secret: dict[str, object]) -> str:
    meta = secret["metadata"]
    assert isinstance(meta, dict)
    return str(meta["resourceVersion"])


def _bundles(cluster: Cluster, name: str) -> dict[str, bytes]:
    out = cluster.kubectl("get", "mutatingwebhookconfiguration", name, "-o", "json").stdout
    return {
        w["name"]: base64.b64decode(w["clientConfig"].get("caBundle", ""))
        for w in json.loads(out)["webhooks"]
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_ensure_creates_tls_secrets_and_leaves_them_alone_on_rerun(
    cluster: Cluster, api: KubeClient, namespace: str
) -> None:
    target = kube.Target(namespace, "wh-tls")
    first = kube.ensure(api, target, _policy(namespace), _now())
    assert first.verdict is pki.Verdict.NEW_CA
    serving = _secret(cluster, namespace, "wh-tls")
    ca = _secret(cluster, namespace, "wh-tls-ca")
    assert serving["type"] == ca["type"] == "kubernetes.io/tls"
    assert sorted(serving["data"]) == ["ca.crt", "tls.crt", "tls.key"]  # type: ignore[call-overload]
    assert _data(serving, "ca.crt") == _data(ca, "tls.crt")
    # The webhook's Secret never carries the CA's private key.
    assert _data(ca, "tls.key") not in _data(serving, "tls.key")
    found = pki.assess(
        pki.KeyPair(_data(ca, "tls.crt"), _data(ca, "tls.key")),
        pki.KeyPair(_data(serving, "tls.crt"), _data(serving, "tls.key")),
        dns_names=pki.service_dns_names("wh", namespace),
        ips=[],
        now=_now(),
        renew_before=30 * DAY,
    )
    assert found.verdict is pki.Verdict.HEALTHY

    again = kube.ensure(api, target, _policy(namespace), _now())
    assert again == kube.Outcome(pki.Verdict.HEALTHY, (), (), again.ca_bundle)
    assert _rv(_secret(cluster, namespace, "wh-tls")) == _rv(serving)
    assert _rv(_secret(cluster, namespace, "wh-tls-ca")) == _rv(ca)


def test_ensure_patches_ca_bundle_once(
    cluster: Cluster, api: KubeClient, namespace: str, webhook_config: str
) -> None:
    target = kube.Target(namespace, "wh-tls", webhook_config)
    outcome = kube.ensure(api, target, _policy(namespace), _now())
    ca_pem = _data(_secret(cluster, namespace, "wh-tls-ca"), "tls.crt")
    assert _bundles(cluster, webhook_config) == {"a.certs.test": ca_pem, "b.certs.test": ca_pem}
    assert f"patched caBundle of mutatingwebhookconfiguration {webhook_config}" in outcome.actions
    again = kube.ensure(api, target, _policy(namespace), _now())
    assert again.actions == ()


def test_only_the_named_webhook_is_patched_and_an_unknown_name_is_refused(
    cluster: Cluster, api: KubeClient, webhook_config: str
) -> None:
    assert kube.patch_ca_bundle(api, webhook_config, b"PEM-B\n", ["b.certs.test"])
    assert _bundles(cluster, webhook_config) == {"a.certs.test": b"", "b.certs.test": b"PEM-B\n"}
    assert not kube.patch_ca_bundle(api, webhook_config, b"PEM-B\n", ["b.certs.test"])
    with pytest.raises(LookupError, match=r"has no webhook named c\.certs\.test; it has a\.certs"):
        kube.patch_ca_bundle(api, webhook_config, b"x", ["c.certs.test"])


def test_rotate_keeps_the_ca_and_the_bundle(
    cluster: Cluster, api: KubeClient, namespace: str, webhook_config: str
) -> None:
    target = kube.Target(namespace, "wh-tls", webhook_config)
    kube.ensure(api, target, _policy(namespace), _now())
    before = _secret(cluster, namespace, "wh-tls")
    bundle_before = _bundles(cluster, webhook_config)
    rotated = kube.ensure(api, target, _policy(namespace), _now(), force_serving=True)
    assert rotated.verdict is pki.Verdict.RENEW_SERVING
    after = _secret(cluster, namespace, "wh-tls")
    assert _data(after, "tls.crt") != _data(before, "tls.crt")
    assert _data(after, "tls.key") != _data(before, "tls.key")
    assert _data(after, "ca.crt") == _data(before, "ca.crt")
    assert _bundles(cluster, webhook_config) == bundle_before


def test_rotate_with_a_new_ca_trusts_old_and_new_until_the_old_expires(
    cluster: Cluster, api: KubeClient, namespace: str, webhook_config: str
) -> None:
    target = kube.Target(namespace, "wh-tls", webhook_config)
    kube.ensure(api, target, _policy(namespace), _now())
    old_ca = _data(_secret(cluster, namespace, "wh-tls-ca"), "tls.crt")
    kube.ensure(api, target, _policy(namespace), _now(), force_ca=True)
    ca_secret = _secret(cluster, namespace, "wh-tls-ca")
    new_ca = _data(ca_secret, "tls.crt")
    assert new_ca != old_ca
    assert _data(ca_secret, "previous-ca.crt") == old_ca
    assert _bundles(cluster, webhook_config)["a.certs.test"] == new_ca + old_ca
    serving = _secret(cluster, namespace, "wh-tls")
    assert _data(serving, "ca.crt") == new_ca
    assert (
        pki.assess_serving(
            pki.KeyPair(_data(serving, "tls.crt"), _data(serving, "tls.key")),
            new_ca,
            dns_names=pki.service_dns_names("wh", namespace),
            ips=[],
            now=_now(),
            renew_before=DAY,
        )
        == []
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"renew_before": 400 * DAY}, "within the renewal threshold"),
        ({"ips": ("127.0.0.1",)}, "does not cover 127.0.0.1"),
    ],
)
def test_a_serving_pair_that_no_longer_fits_is_renewed_with_the_same_ca(
    cluster: Cluster,
    api: KubeClient,
    namespace: str,
    change: dict[str, object],
    reason: str,
) -> None:
    target = kube.Target(namespace, "wh-tls")
    kube.ensure(api, target, _policy(namespace), _now())
    before = _secret(cluster, namespace, "wh-tls")
    ca_rv = _rv(_secret(cluster, namespace, "wh-tls-ca"))
    outcome = kube.ensure(api, target, _policy(namespace, **change), _now())
    assert outcome.verdict is pki.Verdict.RENEW_SERVING
    assert reason in outcome.reasons[0]
    assert _data(_secret(cluster, namespace, "wh-tls"), "tls.crt") != _data(before, "tls.crt")
    assert _rv(_secret(cluster, namespace, "wh-tls-ca")) == ca_rv


def test_a_damaged_secret_is_repaired(cluster: Cluster, api: KubeClient, namespace: str) -> None:
    target = kube.Target(namespace, "wh-tls")
    kube.ensure(api, target, _policy(namespace), _now())
    garbage = base64.b64encode(b"not a certificate").decode()
    cluster.kubectl(
        "-n", namespace, "patch", "secret", "wh-tls", "--type=merge",
        "-p", json.dumps({"data": {"tls.crt": garbage}}),
    )  # fmt: skip
    outcome = kube.ensure(api, target, _policy(namespace), _now())
    assert outcome.verdict is pki.Verdict.RENEW_SERVING
    assert "does not parse" in outcome.reasons[0]
    assert kube.ensure(api, target, _policy(namespace), _now()).verdict is pki.Verdict.HEALTHY


def test_the_cli_works_with_a_kubeconfig_and_never_prints_a_key(
    cluster: Cluster,
    namespace: str,
    webhook_config: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    common = [
        "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
        "--secret", "wh-tls", "--service", "wh", "--webhook-config", webhook_config,
    ]  # fmt: skip
    assert main(["ensure", *common, "--renew-before", "30d"]) == 0
    assert main(["ensure", *common]) == 0
    assert main(["rotate", *common]) == 0
    assert main(["rotate", *common, "--new-ca"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0].startswith(f"{namespace}/wh-tls: new-ca (no CA is stored)")
    assert f"{namespace}/wh-tls: healthy" in printed.out
    assert "nothing to change" in printed.out
    assert "renew-serving (a new serving certificate was asked for)" in printed.out
    assert "new-ca (a new CA was asked for)" in printed.out
    assert "PRIVATE KEY" not in printed.out + printed.err
    assert "BEGIN" not in printed.out + printed.err


def test_the_cli_reports_an_api_failure_in_one_line(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ensure", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    args += ["--secret", "wh-tls", "--service", "wh", "--webhook-config", "no-such-config"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "certs ensure failed: HTTP 404" in err
    assert "Traceback" not in err


def test_ensure_works_in_cluster_with_a_service_account(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The in-cluster path: the apiserver from KUBERNETES_SERVICE_HOST/PORT, the token and CA
    from the service account directory, as a pod sees them."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "certs")
    cluster.kubectl(
        "-n", namespace, "create", "rolebinding", "certs", "--clusterrole=edit",
        f"--serviceaccount={namespace}:certs",
    )  # fmt: skip
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    token = cluster.kubectl("-n", namespace, "create", "token", "certs").stdout.strip()
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    host, port = cluster.server.removeprefix("https://").rsplit(":", 1)
    environ = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    with connect(None, service_account_dir=sa_dir, environ=environ) as api:
        outcome = kube.ensure(api, kube.Target(namespace, "wh-tls"), _policy(namespace), _now())
    assert outcome.verdict is pki.Verdict.NEW_CA
    assert _secret(cluster, namespace, "wh-tls")["type"] == "kubernetes.io/tls"
