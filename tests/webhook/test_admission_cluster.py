"""The real kube-apiserver calls the webhook: pods created with `kubectl` come out mutated."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster import Cluster
from tests.webhook.builders import (
    EXAMPLES,
    MANY_POOLS,
    POOL_A,
    POOL_B,
    USER_NETWORK,
    USER_POOL,
    manifest,
    many_legs_nads,
    many_legs_profiles,
)
from tests.webhook.live import running
from tests.webhook.pki import CA
from webhook.app import Settings
from webhook.server import ServeOptions
from webhook.tls import TlsFiles

pytestmark = pytest.mark.cluster
SEED = (EXAMPLES / "seed-pod.yaml").read_text()
_EXAMPLE_NADS = ("sriov-pf-a", "sriov-pf-b")  # same names and pools in examples/nads.yaml


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"admit-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("apply", "-n", name, "-f", str(EXAMPLES / "nads.yaml"))
    many = [manifest(nad) for nad in many_legs_nads(name) if nad.name not in _EXAMPLE_NADS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(many))
    # The ServiceAccount admission plugin refuses pods until the controller made `default`.
    poll(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
        what="the default service account",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def webhook(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The webhook on 127.0.0.1, registered for `namespace` only (the cluster is shared)."""
    ca = CA("bond-injector-test-ca")
    cert, key = ca.issue("localhost").write(tmp_path, "tls")
    profiles = tmp_path / "profiles.yaml"  # the example's `default`, then legs-3 and legs-4
    more = many_legs_profiles(3, 4).split("\n", 1)[1]
    profiles.write_text((EXAMPLES / "profiles.yaml").read_text() + more)
    options = ServeOptions(
        settings=Settings(profiles=profiles),
        tls=TlsFiles(cert, key),
        kubeconfig=cluster.kubeconfig,
    )
    with running(options) as server:
        name = f"bond-injector-{namespace}"
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "bond.bond-injector.io",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{server.port}/mutate",
                        "caBundle": base64.b64encode(ca.pem).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "objectSelector": {"matchLabels": {"bond": "true"}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                    "reinvocationPolicy": "IfNeeded",
                }
            ],
        }
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
        try:
            yield namespace
        finally:
            cluster.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)


def _create(
    cluster: Cluster, namespace: str, manifest: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "create", "-n", namespace, "-o", "json", *extra, "-f", "-", input=manifest, check=False
    )


def test_kubectl_create_gets_the_bond(cluster: Cluster, webhook: str) -> None:
    created = _create(cluster, webhook, SEED)
    assert created.returncode == 0, created.stderr
    pod = json.loads(created.stdout)
    networks = json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert [(n["name"], n["interface"]) for n in networks] == [
        ("sriov-pf-a", "net1"),
        ("sriov-pf-b", "net2"),
        ("bond-net", "bond0"),
    ]
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"] == {POOL_A: "1", POOL_B: "1"}


def test_server_side_dry_run_is_mutated_too(cluster: Cluster, webhook: str) -> None:
    dry = _create(cluster, webhook, SEED, "--dry-run=server")
    assert dry.returncode == 0, dry.stderr
    assert "k8s.v1.cni.cncf.io/networks" in json.loads(dry.stdout)["metadata"]["annotations"]
    assert cluster.kubectl("get", "pod", "test-pod", "-n", webhook, check=False).returncode != 0


def test_denial_reaches_the_user(cluster: Cluster, webhook: str) -> None:
    pod = yaml.safe_load(SEED)
    pod["metadata"]["annotations"] = {"bond-injector.io/profile": "gold"}
    denied = _create(cluster, webhook, yaml.safe_dump(pod))
    assert denied.returncode != 0
    assert (
        'admission webhook "bond.bond-injector.io" denied the request: '
        f"pod {webhook}/test-pod: annotation bond-injector.io/profile names profile 'gold'"
    ) in denied.stderr


def test_pods_without_the_label_are_not_sent(cluster: Cluster, webhook: str) -> None:
    pod = yaml.safe_load(SEED)
    pod["metadata"]["labels"] = {"app": "plain"}
    created = _create(cluster, webhook, yaml.safe_dump(pod))
    assert created.returncode == 0, created.stderr
    assert "annotations" not in json.loads(created.stdout)["metadata"]


@pytest.mark.parametrize("legs", [3, 4])
def test_kubectl_create_bonds_more_legs_and_counts_the_pods_own_network(
    cluster: Cluster, webhook: str, legs: int
) -> None:
    pod = yaml.safe_load(SEED)
    pod["metadata"]["annotations"] = {
        "bond-injector.io/profile": f"legs-{legs}",
        "k8s.v1.cni.cncf.io/networks": json.dumps([USER_NETWORK]),
    }
    created = _create(cluster, webhook, yaml.safe_dump(pod))
    assert created.returncode == 0, created.stderr
    assert "Warning" not in created.stderr
    stored = json.loads(created.stdout)
    networks = json.loads(stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
    assert [(n["name"], n["interface"]) for n in networks] == [
        ("data-net", "data0"),
        *((f"sriov-pf-{'abcd'[i]}", f"net{i + 1}") for i in range(legs)),
        (f"bond-{legs}", "bond0"),
    ]
    counts = {pool: "1" for pool in (*MANY_POOLS[:legs], USER_POOL)}
    resources = stored["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"] == counts


def test_another_namespaces_nad_is_denied_alike_whether_it_exists(
    cluster: Cluster, webhook: str
) -> None:
    """Issue 21, finding 5: the webhook's cluster-wide NAD read must not answer for the pod's
    author whether `other-ns/name` exists, not even to `--dry-run=server`."""
    hidden = f"hidden-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", hidden)
    try:
        nad = {
            "apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition",
            "metadata": {
                "name": "secret-net",
                "namespace": hidden,
                "annotations": {"k8s.v1.cni.cncf.io/resourceName": "vendor.com/hidden_pool"},
            },
            "spec": {"config": json.dumps({"cniVersion": "1.0.0", "type": "sriov"})},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(nad))
        absent = f"absent-{uuid.uuid4().hex[:8]}"  # no such namespace at all
        answers = []
        for ns in (hidden, absent):
            pod = yaml.safe_load(SEED)
            pod["metadata"]["annotations"] = {
                "k8s.v1.cni.cncf.io/networks": f"{ns}/secret-net@net9"
            }
            denied = _create(cluster, webhook, yaml.safe_dump(pod), "--dry-run=server")
            assert denied.returncode != 0
            answers.append(denied.stderr.replace(ns, "NS"))
        assert answers[0] == answers[1]
        assert (
            f"pod {webhook}/test-pod: annotation k8s.v1.cni.cncf.io/networks entry 0 "
            "(NS/secret-net@net9) names a network-attachment-definition in namespace NS; "
            f"profile 'default' allows the pod's own entries from namespaces {webhook} only"
        ) in answers[0]
    finally:
        cluster.kubectl("delete", "namespace", hidden, "--wait=false", check=False)
