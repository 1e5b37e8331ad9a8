"""Issue 5, item 4: after dev-up, plain `kubectl apply` of labelled pods gets them bonded."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from typing import Any

import pytest
from cryptography import x509

from certs.cli import main as certs_main
from tests.e2e.conftest import BondEnv, labelled_pod
from tests.poll import poll
from tests.rigs.dev import NAMESPACE

pytestmark = pytest.mark.cluster

NETWORKS = "k8s.v1.cni.cncf.io/networks"
POOLS = {"intel.com/sriov_pf_a": "1", "intel.com/sriov_pf_b": "1"}


def _assert_bonded(pod: dict[str, Any]) -> None:
    networks = json.loads(pod["metadata"]["annotations"][NETWORKS])
    assert [(n["namespace"], n["name"], n["interface"]) for n in networks] == [
        (NAMESPACE, "sriov-pf-a", "net1"),
        (NAMESPACE, "sriov-pf-b", "net2"),
        (NAMESPACE, "bond-net", "bond0"),
    ]
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"] == POOLS
    assert resources["limits"] == POOLS


def test_the_seed_pod_with_only_the_label_is_stored_bonded(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    bond_env.create(ns, labelled_pod("test-pod"))
    _assert_bonded(bond_env.get(ns, "pod", "test-pod"))


def test_a_pod_without_the_label_is_untouched(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    pod = labelled_pod("plain")
    pod["metadata"]["labels"] = {}  # type: ignore[index]
    bond_env.create(ns, pod)
    stored = bond_env.get(ns, "pod", "plain")
    assert NETWORKS not in (stored["metadata"].get("annotations") or {})  # type: ignore[attr-defined]
    assert stored["spec"]["containers"][0]["resources"] == {}  # type: ignore[index]


def test_a_labelled_pod_in_the_release_namespace_is_untouched(bond_env: BondEnv) -> None:
    name = f"in-release-ns-{secrets.token_hex(3)}"
    bond_env.create(NAMESPACE, labelled_pod(name))
    try:
        stored = bond_env.get(NAMESPACE, "pod", name)
        assert NETWORKS not in (stored["metadata"].get("annotations") or {})  # type: ignore[attr-defined]
    finally:
        bond_env.cluster.kubectl("-n", NAMESPACE, "delete", "pod", name, "--wait=false")


def test_an_unknown_profile_is_refused_with_our_message(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    pod = labelled_pod("wrong", **{"bond-injector.io/profile": "nope"})
    result = bond_env.cluster.kubectl(
        "-n", ns, "apply", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode != 0
    assert "admission webhook" in result.stderr and "denied the request" in result.stderr
    assert "names profile 'nope', which is not defined (defined: default, sched)" in result.stderr


def test_server_side_dry_run_returns_the_mutated_pod(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    out = bond_env.cluster.kubectl(
        "-n", ns, "apply", "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(labelled_pod("dry")),
    ).stdout  # fmt: skip
    _assert_bonded(json.loads(out))
    assert bond_env.cluster.kubectl("-n", ns, "get", "pod", "dry", check=False).returncode != 0


def test_a_deployments_pods_are_bonded(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    template = labelled_pod("ignored")
    template["metadata"] = {"labels": {"bond": "true", "app": "bonded"}}
    template["spec"]["restartPolicy"] = "Always"  # type: ignore[index]
    deployment: dict[str, object] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bonded"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "bonded"}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    bond_env.create(ns, deployment)

    def pods() -> list[dict[str, Any]]:
        out = bond_env.cluster.kubectl("-n", ns, "get", "pods", "-l", "app=bonded", "-o", "json")
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    poll(lambda: len(pods()) == 2, 60, "the ReplicaSet's two pods")
    for pod in pods():
        _assert_bonded(pod)


def _served_serial(bond_env: BondEnv) -> int:
    pem = ssl.get_server_certificate(("127.0.0.1", bond_env.webhook.port), timeout=5)
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_failure_policy_with_the_webhook_stopped(bond_env: BondEnv) -> None:
    ns = bond_env.namespace()
    bond_env.webhook.stop()
    try:
        refused = bond_env.cluster.kubectl(
            "-n", ns, "create", "-f", "-", input=json.dumps(labelled_pod("refused")), check=False
        )
        assert refused.returncode != 0
        assert "failed calling webhook" in refused.stderr
        # Unlabelled pods never reach the webhook, so they are admitted even now.
        plain = labelled_pod("plain")
        plain["metadata"]["labels"] = {}  # type: ignore[index]
        bond_env.create(ns, plain)

        bond_env.upgrade("--set", "webhook.failurePolicy=Ignore")
        try:
            bond_env.create(ns, labelled_pod("admitted"))
            stored = bond_env.get(ns, "pod", "admitted")
            assert NETWORKS not in (stored["metadata"].get("annotations") or {})  # type: ignore[attr-defined]
        finally:
            bond_env.upgrade()
    finally:
        bond_env.restart_webhook()
    bond_env.create(ns, labelled_pod("bonded-again"))
    _assert_bonded(bond_env.get(ns, "pod", "bonded-again"))


def test_rotating_the_certificate_while_pods_are_created_fails_no_admission(
    bond_env: BondEnv,
) -> None:
    ns = bond_env.namespace()
    before = _served_serial(bond_env)
    failures: list[str] = []
    created: list[str] = []
    stop = threading.Event()

    def create_pods() -> None:
        for i in range(60):  # bounded: at most 60 pods, and it stops when the rotations are done
            if stop.is_set() and i >= 10:
                return
            name = f"rot-{i}"
            result = bond_env.cluster.kubectl(
                "-n", ns, "create", "-f", "-", input=json.dumps(labelled_pod(name)), check=False
            )
            if result.returncode != 0:
                failures.append(result.stderr)
            else:
                created.append(name)

    creator = threading.Thread(target=create_pods)
    creator.start()
    try:
        for _ in range(2):
            # A new serving pair from the same CA (caBundle unchanged); the webhook reloads it.
            serving = _served_serial(bond_env)
            args = ["generate", "--out-dir", str(bond_env.certs_dir), "--ip", "127.0.0.1"]
            assert certs_main([*args, "--dns", "localhost", "--rotate"]) == 0

            def reloaded(previous: int = serving) -> bool:
                return _served_serial(bond_env) != previous

            poll(reloaded, 60, "the webhook to reload")
    finally:
        stop.set()
        creator.join(timeout=300)
    assert failures == []
    assert len(created) >= 10
    assert _served_serial(bond_env) != before
    out = bond_env.cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout
    for pod in json.loads(out)["items"]:
        _assert_bonded(pod)
