"""Fixtures shared by the webhook's cluster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rigs.cluster import Cluster
from webhook.kubeapi import KubeClient, connect


@pytest.fixture
def api(cluster: Cluster) -> Iterator[KubeClient]:
    """bond-injector's API client on the session's control plane, closed after the test."""
    with connect(cluster.kubeconfig) as c:
        yield c
