"""Profiles of three and four legs and a network of the pod's own, against the real API server.

Cold (a cache that never listed: every NAD is a GET) and warm (the watch has them all): the
mutation runs once, after every miss was fetched, all at the same time.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster import Cluster
from tests.webhook.asgi import AsgiClient
from tests.webhook.builders import (
    MANY_POOLS,
    USER_NETWORK,
    USER_POOL,
    expected,
    manifest,
    many_legs_nads,
    many_legs_profiles,
    pod,
)
from tests.webhook.reviews import decoded_patch, review
from tests.webhook.scrape import samples
from webhook.app import Settings, create_app
from webhook.kubeapi import KubeClient
from webhook.nadcache import KubeNadCache
from webhook.nads import NetworkAttachmentDefinition

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"legs-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    docs = [manifest(nad) for nad in many_legs_nads(name)]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def profiles(tmp_path: Path) -> Settings:
    path = tmp_path / "profiles.yaml"
    path.write_text(many_legs_profiles(3, 4))
    return Settings(profiles=path)


class _Together(KubeNadCache):
    """The real cache, never started, whose GETs wait until `together` are in flight: GETs made
    one after another break the barrier, so an answer at all shows they ran at the same time."""

    def __init__(self, api: KubeClient, together: int) -> None:
        super().__init__(api)
        self._barrier = threading.Barrier(together)
        self.fetched: list[tuple[str, str]] = []

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.fetched.append((namespace, name))
        self._barrier.wait(timeout=30)
        return super().fetch(namespace, name)


def _legs_then_bond(legs: int) -> list[dict[str, Any]]:
    return [
        *({"name": f"sriov-pf-{'abcd'[i]}", "interface": f"net{i + 1}"} for i in range(legs)),
        {"name": f"bond-{legs}", "interface": "bond0"},
    ]


@pytest.mark.parametrize("legs", [3, 4])
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_every_nad_in_one_round(
    api: KubeClient, namespace: str, profiles: Settings, legs: int, cache: str
) -> None:
    if cache == "cold":
        nads: KubeNadCache = _Together(api, together=legs + 2)
    else:
        nads = KubeNadCache(api, watch_timeout=5)
        nads.start()
        poll(lambda: nads.cached(namespace, "data-net"), 30, "the watch to deliver the NADs")
    try:
        app = AsgiClient(create_app(profiles, nads))
        p = pod(annotations={"bond-injector.io/profile": f"legs-{legs}"}, networks=[USER_NETWORK])
        body = json.dumps(review(p, namespace=namespace)).encode()
        response = app.post("/mutate", body, {"content-type": "application/json"}).json()
        metrics = app.get("/metrics").text
    finally:
        nads.stop()
    answer = response["response"]
    assert answer["allowed"] is True, answer
    assert "warnings" not in answer
    counts = {pool: "1" for pool in (*MANY_POOLS[:legs], USER_POOL)}
    want = expected(
        p, [USER_NETWORK, *_legs_then_bond(legs)], {"requests": counts, "limits": counts}
    )
    assert jsonpatch.apply_patch(p, decoded_patch(answer)) == want
    fetches = legs + 2 if cache == "cold" else 0
    assert samples(metrics)["bond_injector_nad_api_fetches_total"] == fetches
    if isinstance(nads, _Together):
        assert sorted(nads.fetched) == sorted(
            [(namespace, n["name"]) for n in [*_legs_then_bond(legs), USER_NETWORK]]
        )
