"""The chart README's advice, checked: a ResourceQuota on the pool resources caps the VFs that pods
of a namespace get by the label alone (the webhook's requests are counted, as it runs first)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml

from tests.doctor.conftest import POOL_A, POOL_B, DoctorEnv
from tests.poll import poll
from tests.rigs.cluster_procs import ClusterError

pytestmark = pytest.mark.cluster

SEED = Path(__file__).parents[2] / "examples" / "seed-pod.yaml"


def test_a_quota_on_the_pools_caps_labelled_pods(doctor_env: DoctorEnv) -> None:
    namespace = f"doctor-quota-{secrets.token_hex(3)}"
    doctor_env.cluster.create_namespace(namespace)
    try:
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "sriov-vfs", "namespace": namespace},
            "spec": {"hard": {f"requests.{POOL_A}": "1", f"requests.{POOL_B}": "1"}},
        }
        doctor_env.apply(quota)
        # Admission refuses pods against a quota whose status the controller has not computed.
        poll(
            lambda: (
                doctor_env.get("resourcequota", "-n", namespace, "sriov-vfs")
                .get("status", {})
                .get("hard")
            ),
            60,
            "the quota controller to compute quota sriov-vfs",
            interval=0.5,
        )
        pod = yaml.safe_load(SEED.read_text())
        doctor_env.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
        pod["metadata"]["name"] = "second"
        with pytest.raises(ClusterError) as refused:
            doctor_env.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(pod))
    finally:
        doctor_env.kubectl("delete", "namespace", namespace, "--wait=false")
    assert "exceeded quota: sriov-vfs" in str(refused.value)
    assert f"requested: requests.{POOL_A}=1" in str(refused.value)
