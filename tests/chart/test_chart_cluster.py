"""The chart against a real kube-apiserver: server-side dry-run of every value set, a real
`helm install` in url mode, and the builtin certificate flow run with the chart's own RBAC."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART, CI_VALUES, REPO, helm, parse, template_args
from tests.rigs.cluster import Cluster

pytestmark = pytest.mark.cluster

CERT_MANAGER_CRDS = Path(__file__).parent / "crds" / "cert-manager-minimal.yaml"


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"chart-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def cert_manager_crds(cluster: Cluster) -> Iterator[None]:
    cluster.kubectl("apply", "-f", str(CERT_MANAGER_CRDS))
    for crd in ("issuers.cert-manager.io", "certificates.cert-manager.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    yield
    cluster.kubectl("delete", "-f", str(CERT_MANAGER_CRDS), "--wait=false")


@pytest.mark.usefixtures("cert_manager_crds")
@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *[p.stem for p in CI_VALUES]]
)
def test_every_value_set_passes_server_side_dry_run(
    cluster: Cluster, namespace: str, values: Path | None
) -> None:
    rendered = helm(*template_args(*([values] if values else []), namespace=namespace)).stdout
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
    )
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(parse(rendered))


def test_the_minimal_cert_manager_crds_still_catch_a_typo(
    cluster: Cluster, namespace: str, cert_manager_crds: None
) -> None:
    bad = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "typo", "namespace": namespace},
        "spec": {"secretName": "x", "issuerRef": {"name": "y"}, "dnsName": ["oops"]},
    }
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.dnsName"' in result.stderr


@pytest.fixture(scope="module")
def enforcing(cluster: Cluster) -> Iterator[dict[str, str]]:
    """A namespace per Pod Security level enforced by the apiserver's PodSecurity admission."""
    names = {level: f"psa-{level}-{secrets.token_hex(3)}" for level in ("baseline", "privileged")}
    for level, name in names.items():
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": level}},
        }
        cluster.kubectl("create", "-f", "-", input=json.dumps(namespace))
        cluster.wait_for_default_service_account(name)
    yield names
    for name in names.values():
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("values", "violations", "absent"),
    [
        (
            None,
            [
                "host namespaces (hostPID=true)",
                'privileged (container "helper" must not set securityContext.privileged=true)',
                'hostPath volumes (volume "cni-bin")',
            ],
            [],
        ),
        (
            CHART / "ci" / "helper-disabled-values.yaml",
            ['hostPath volumes (volume "cni-bin")'],
            ["hostPID", "privileged"],
        ),
    ],
    ids=["helper", "helper-disabled"],
)
def test_the_installer_pod_needs_a_privileged_namespace(
    cluster: Cluster,
    enforcing: dict[str, str],
    values: Path | None,
    violations: list[str],
    absent: list[str],
) -> None:
    """What the chart README says about Pod Security, asked of the apiserver: the DaemonSet's
    pod is refused where `baseline` is enforced, naming each violation, and admitted where
    `privileged` is."""
    rendered = helm(*template_args(*([values] if values else []))).stdout
    (daemonset,) = [r.obj for r in parse(rendered) if r.kind == "DaemonSet"]
    template = daemonset["spec"]["template"]
    results = {}
    for level, namespace in enforcing.items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "cni-installer", "namespace": namespace, **template["metadata"]},
            "spec": template["spec"],
        }
        results[level] = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )
    assert results["privileged"].returncode == 0, results["privileged"].stderr
    refused = results["baseline"]
    assert refused.returncode != 0
    assert 'violates PodSecurity "baseline:latest"' in refused.stderr
    for violation in violations:
        assert violation in refused.stderr
    for word in absent:
        assert word not in refused.stderr


def _install(cluster: Cluster, release: str, namespace: str, *args: str) -> None:
    cluster.helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace", *args
    )


def test_helm_install_in_url_mode(cluster: Cluster) -> None:
    release, namespace = f"url-{secrets.token_hex(3)}", f"url-{secrets.token_hex(3)}"
    url_values = CHART / "ci" / "url-values.yaml"
    try:
        _install(cluster, release, namespace, "--values", str(url_values), "--wait")
        status = json.loads(cluster.helm("status", release, "-n", namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
        assert "keep that server running" in status["info"]["notes"]
        config = json.loads(
            cluster.kubectl(
                "get", "mutatingwebhookconfiguration", f"{release}-bond-injector", "-o", "json"
            ).stdout
        )
        client_config = config["webhooks"][0]["clientConfig"]
        assert client_config["url"] == "https://127.0.0.1:9443/mutate"
        assert (
            client_config["caBundle"]
            == (yaml.safe_load(url_values.read_text())["certificates"]["external"]["caBundle"])
        )
        nads = cluster.kubectl(
            "-n", namespace, "get", "network-attachment-definitions", "-o", "name"
        ).stdout.split()
        assert sorted(nads) == [
            "networkattachmentdefinition.k8s.cni.cncf.io/bond-net",
            "networkattachmentdefinition.k8s.cni.cncf.io/sriov-pf-a",
            "networkattachmentdefinition.k8s.cni.cncf.io/sriov-pf-b",
        ]
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    gone = cluster.kubectl(
        "get", "mutatingwebhookconfiguration", f"{release}-bond-injector", check=False
    )
    assert gone.returncode != 0


def _token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.kubectl(
        "-n", namespace, "create", "token", account, "--duration=10m"
    ).stdout.strip()
    ca = base64.b64encode(cluster.ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "rig", "cluster": {"server": cluster.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "rig", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _can_i(cluster: Cluster, namespace: str, account: str, *what: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", *what, "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:{account}", check=False,
    )  # fmt: skip
    return result.stdout.strip() == "yes"


def test_builtin_certificates_with_the_charts_own_rbac(cluster: Cluster, tmp_path: Path) -> None:
    """Install without hooks (no kubelet runs Jobs here), then run the renewal CronJob's exact
    command as its ServiceAccount: the RBAC suffices, and grants nothing more."""
    release, namespace = f"bi-{secrets.token_hex(3)}", f"bi-{secrets.token_hex(3)}"
    fullname = f"{release}-bond-injector"
    account = f"{fullname}-certgen"
    try:
        _install(cluster, release, namespace, "--no-hooks")
        cron = json.loads(
            cluster.kubectl("-n", namespace, "get", "cronjob", account, "-o", "json").stdout
        )
        container: dict[str, Any] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["args"][:2] == ["certs", "ensure"]
        kubeconfig = _token_kubeconfig(cluster, namespace, account, tmp_path / "sa.kubeconfig")
        # The image's entry point, as the CronJob runs it: `bond-injector certs ensure ...`.
        entry = Path(sys.executable).with_name(container["command"][0])
        command = [str(entry), *container["args"], "--kubeconfig", str(kubeconfig)]
        first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        assert first.returncode == 0, first.stderr
        assert f"patched caBundle of mutatingwebhookconfiguration {fullname}" in first.stdout
        second = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        assert second.returncode == 0, second.stderr
        assert "healthy" in second.stdout and "nothing to change" in second.stdout

        secret = json.loads(
            cluster.kubectl(
                "-n", namespace, "get", "secret", f"{fullname}-webhook-tls", "-o", "json"
            ).stdout
        )
        config = json.loads(
            cluster.kubectl("get", "mutatingwebhookconfiguration", fullname, "-o", "json").stdout
        )
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

        assert _can_i(cluster, namespace, account, "get", f"secret/{fullname}-webhook-tls")
        assert not _can_i(cluster, namespace, account, "get", "secret/some-other-secret")
        assert not _can_i(cluster, namespace, account, "list", "secrets")
        assert not _can_i(cluster, namespace, account, "delete", f"secret/{fullname}-webhook-tls")
        assert not _can_i(
            cluster, namespace, account, "patch", "mutatingwebhookconfiguration/other"
        )
        webhook_sa = f"{fullname}-webhook"
        assert _can_i(cluster, namespace, webhook_sa, "list", "network-attachment-definitions")
        assert not _can_i(cluster, namespace, webhook_sa, "get", "secrets")
        assert not _can_i(
            cluster, namespace, webhook_sa, "create", "network-attachment-definitions"
        )

        # An upgrade re-applies the webhook configuration: the patched caBundle must survive it.
        cluster.helm(
            "upgrade", release, str(CHART), "--namespace", namespace, "--no-hooks",
            "--set", "webhook.failurePolicy=Ignore",
        )  # fmt: skip
        upgraded = json.loads(
            cluster.kubectl("get", "mutatingwebhookconfiguration", fullname, "-o", "json").stdout
        )["webhooks"][0]
        assert upgraded["failurePolicy"] == "Ignore"
        assert upgraded["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", "--no-hooks", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
