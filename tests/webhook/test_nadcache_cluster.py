"""The watch-based NAD cache against the cluster rig's real kube-apiserver."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster import Cluster
from tests.webhook.asgi import AsgiClient
from tests.webhook.builders import BOND_CONFIG, EXAMPLES, POOL_A, POOL_B, example_profiles, pod
from tests.webhook.reviews import review
from webhook.app import Settings, create_app
from webhook.kubeapi import KubeClient
from webhook.mutation import Decision, mutate
from webhook.nadcache import KubeNadCache, WatchExpired

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"nads-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def cache(api: KubeClient) -> Iterator[KubeNadCache]:
    nads = KubeNadCache(api, watch_timeout=5)
    nads.start()
    assert nads.wait_synced(30), nads.last_error
    yield nads
    nads.stop()


def _nad(namespace: str, name: str, resource: str | None, config: dict[str, Any]) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource is not None:
        meta["annotations"] = {"k8s.v1.cni.cncf.io/resourceName": resource}
    doc = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": meta,
        "spec": {"config": json.dumps(config)},
    }
    return yaml.safe_dump(doc)


def _apply(cluster: Cluster, *docs: str) -> None:
    cluster.kubectl("apply", "-f", "-", input="---\n".join(docs))


def _decide(cache: KubeNadCache, namespace: str) -> Decision:
    # Only the cache: the decision must follow the watch, not a GET.
    return mutate(pod(), namespace, example_profiles(), cache.cached)


def _allowed(cache: KubeNadCache, namespace: str) -> Decision | None:
    decision = _decide(cache, namespace)
    return decision if decision.allowed else None


def _denied(cache: KubeNadCache, namespace: str) -> Decision | None:
    decision = _decide(cache, namespace)
    return None if decision.allowed else decision


def test_decisions_follow_create_change_delete(
    cluster: Cluster, cache: KubeNadCache, namespace: str
) -> None:
    assert "does not exist" in _decide(cache, namespace).message
    _apply(
        cluster,
        _nad(namespace, "sriov-pf-a", POOL_A, {"type": "sriov"}),
        _nad(namespace, "sriov-pf-b", POOL_B, {"type": "sriov"}),
        _nad(namespace, "bond-net", None, BOND_CONFIG),
    )
    patched = poll(lambda: _allowed(cache, namespace), what="NADs created")
    assert patched.outcome == "patched"

    _apply(cluster, _nad(namespace, "sriov-pf-b", POOL_A, {"type": "sriov"}))
    denied = poll(lambda: _denied(cache, namespace), what="NAD changed")
    assert "both use pool intel.com/sriov_pf_a" in denied.message

    _apply(cluster, _nad(namespace, "sriov-pf-b", POOL_B, {"type": "sriov"}))
    poll(lambda: _decide(cache, namespace).allowed, what="NAD changed back")

    cluster.kubectl("delete", "network-attachment-definition", "-n", namespace, "bond-net")
    gone = poll(lambda: _denied(cache, namespace), what="NAD deleted")
    assert gone.message == (
        f"network-attachment-definition {namespace}/bond-net does not exist (profile 'default', "
        "bond bond0); create it, or fix the profile's bond network"
    )


def test_miss_is_answered_by_a_get(cluster: Cluster, api: KubeClient, namespace: str) -> None:
    cold = KubeNadCache(api)  # never started: every lookup is a miss
    assert cold.fetch(namespace, "sriov-pf-a") is None
    _apply(cluster, _nad(namespace, "sriov-pf-a", POOL_A, {"type": "sriov"}))
    nad = cold.fetch(namespace, "sriov-pf-a")
    assert nad is not None and nad.resource_name == POOL_A


def test_webhook_app_on_the_cache(cluster: Cluster, cache: KubeNadCache, namespace: str) -> None:
    app = AsgiClient(create_app(Settings(profiles=EXAMPLES / "profiles.yaml"), cache))
    assert app.get("/readyz").status_code == 200
    _apply(
        cluster,
        _nad(namespace, "sriov-pf-a", POOL_A, {"type": "sriov"}),
        _nad(namespace, "sriov-pf-b", POOL_B, {"type": "sriov"}),
        _nad(namespace, "bond-net", None, BOND_CONFIG),
    )
    # Straight after creation the watch may not have delivered: the GET on miss answers.
    body = json.dumps(review(pod(), namespace=namespace)).encode()
    r = app.post("/mutate", body, {"content-type": "application/json"})
    assert r.json()["response"]["allowed"] is True
    assert r.json()["response"]["patchType"] == "JSONPatch"


def test_too_old_resource_version_is_watch_expired(cache: KubeNadCache) -> None:
    # The run loop relists on WatchExpired; here: the real server's 410 is recognised as one.
    with pytest.raises(WatchExpired):
        cache._watch_from("1")
