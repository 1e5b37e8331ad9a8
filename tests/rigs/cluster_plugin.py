"""Cluster tier plugin: the session's local control plane as the `cluster` fixture.

The control plane starts on first use, in a temp dir, and is torn down at session end even when
tests fail. With BOND_INJECTOR_KUBECONFIG set (e.g. to .cluster/kubeconfig after
`make cluster-up`) the fixture reuses that live control plane instead and leaves it running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.rigs.cluster import Cluster, ClusterError, find_binaries

KUBECONFIG_ENV = "BOND_INJECTOR_KUBECONFIG"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m 'not cluster'` must drop them too
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the `cluster` fixture is in the cluster tier, marked or not."""
    for item in items:
        uses_cluster = "cluster" in getattr(item, "fixturenames", ())
        if uses_cluster and item.get_closest_marker("cluster") is None:
            item.add_marker(pytest.mark.cluster)


def _fail(message: str) -> NoReturn:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running kube-apiserver (+ etcd, controller-manager, scheduler) for the whole session."""
    problem: str | None = None
    try:
        binaries = find_binaries()
    except ClusterError as err:
        problem = str(err)
    if problem is not None:  # failed outside the except: no chained traceback in the report
        _fail(problem)
    reuse = os.environ.get(KUBECONFIG_ENV)
    if reuse:
        try:
            attached = Cluster.attach(
                Path(reuse), tmp_path_factory.mktemp("cluster-attached"), binaries=binaries
            )
        except ClusterError as err:
            problem = f"{KUBECONFIG_ENV}={reuse}: {err}"
        if problem is not None:
            _fail(problem)
        yield attached
        return
    state_dir = tmp_path_factory.mktemp("cluster") / "state"
    running = Cluster(state_dir, binaries=binaries, die_with_parent=True)
    try:
        running.start()
    except ClusterError as err:
        problem = f"the local control plane did not start: {err}"
    if problem is not None:
        _fail(problem)
    try:
        yield running
    finally:
        running.stop()
