"""`make dev-up` / `make dev-down` as a developer runs them (issue 5, item 3 and "Done when")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rigs.cluster import REPO, find_binaries, port_open
from tests.rigs.cluster_procs import free_port

pytestmark = pytest.mark.cluster


def _dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.rigs.dev", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_dev_up_then_kubectl_apply_of_the_seed_pod_shows_it_mutated(tmp_path: Path) -> None:
    cluster_dir, dev_dir, port = tmp_path / "cluster", tmp_path / "dev", free_port()
    where = ["--cluster-dir", str(cluster_dir), "--dir", str(dev_dir)]
    kubectl = [str(find_binaries()["kubectl"]), "--kubeconfig", str(cluster_dir / "kubeconfig")]
    try:
        up = _dev("up", *where, "--port", str(port))
        assert up.returncode == 0, up.stderr
        assert f"webhook up: https://127.0.0.1:{port}/mutate" in up.stdout
        assert "chart installed: release bond-injector in namespace bond-injector" in up.stdout
        again = _dev("up", *where, "--port", str(port))  # re-running is safe
        assert again.returncode == 0, again.stderr
        assert "cluster already up" in again.stdout

        seed = REPO / "examples" / "seed-pod.yaml"
        subprocess.run([*kubectl, "apply", "-f", str(seed)], check=True, capture_output=True)
        pod = json.loads(
            subprocess.run(
                [*kubectl, "get", "pod", "test-pod", "-o", "json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        networks = json.loads(pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
        assert [n["interface"] for n in networks] == ["net1", "net2", "bond0"]
        pools = {"intel.com/sriov_pf_a": "1", "intel.com/sriov_pf_b": "1"}
        assert pod["spec"]["containers"][0]["resources"] == {"limits": pools, "requests": pools}
    finally:
        down = _dev("down", *where)
    assert down.returncode == 0, down.stderr
    assert not port_open(port)
    assert not cluster_dir.exists()
