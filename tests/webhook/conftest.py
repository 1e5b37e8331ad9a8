"""Fixtures shared by the webhook's cluster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from certs.kube import api_client
from tests.rigs.cluster import Cluster


@pytest.fixture
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    """A Kubernetes API client on the session's control plane, closed after the test."""
    with api_client(cluster.kubeconfig) as c:
        yield c
