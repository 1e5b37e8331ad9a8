"""Cluster tier plugin: the session's local control plane as the `cluster` fixture.

The control plane starts on first use, in a temp dir, and is torn down at session end even when
tests fail. With BOND_INJECTOR_KUBECONFIG set (e.g. to .cluster/kubeconfig after
`make cluster-up`) the fixture reuses that live control plane instead and leaves it running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rigs.cluster import Cluster, ClusterError, find_binaries

KUBECONFIG_ENV = "BOND_INJECTOR_KUBECONFIG"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running kube-apiserver (+ etcd, controller-manager, scheduler) for the whole session."""
    try:
        binaries = find_binaries()
    except ClusterError as err:
        pytest.fail(str(err), pytrace=False)
    reuse = os.environ.get(KUBECONFIG_ENV)
    if reuse:
        try:
            attached = Cluster.attach(
                Path(reuse), tmp_path_factory.mktemp("cluster-attached"), binaries=binaries
            )
        except ClusterError as err:
            pytest.fail(f"{KUBECONFIG_ENV}={reuse}: {err}", pytrace=False)
        yield attached
        return
    state_dir = tmp_path_factory.mktemp("cluster") / "state"
    running = Cluster(state_dir, binaries=binaries)
    try:
        running.start()
    except ClusterError as err:
        pytest.fail(f"the local control plane did not start: {err}", pytrace=False)
    try:
        yield running
    finally:
        running.stop()
