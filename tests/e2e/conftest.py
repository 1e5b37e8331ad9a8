"""The dev-up environment inside the test session: the session's control plane, the webhook
served locally, the chart installed as release bond-injector with webhook.url (tests.rigs.dev)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.rigs.cluster import Cluster
from tests.rigs.dev import (
    NAMESPACE,
    RELEASE,
    WebhookProcess,
    generate_certs,
    install_chart,
    render_profiles,
    start_webhook,
)

SCHED_NAMESPACE = "e2e-sched"
POOL_A = "e2e.bond-injector.io/pf-a"
POOL_B = "e2e.bond-injector.io/pf-b"
# A second profile for the scheduler test, on pools no other test or node uses.
EXTRA_VALUES = {
    "profiles": {
        "sched": {
            "legs": [
                {"network": f"{SCHED_NAMESPACE}/sched-pf-a", "interface": "net1"},
                {"network": f"{SCHED_NAMESPACE}/sched-pf-b", "interface": "net2"},
            ],
            "bond": {"network": f"{SCHED_NAMESPACE}/sched-bond", "interface": "bond0"},
            "requireDistinctPools": True,
        }
    }
}


@dataclass
class BondEnv:
    cluster: Cluster
    workdir: Path
    certs_dir: Path
    profiles: Path
    webhook: WebhookProcess
    values: Path
    sets: list[str] = field(default_factory=list)

    def restart_webhook(self) -> None:
        self.webhook = start_webhook(
            self.cluster.kubeconfig,
            self.certs_dir,
            self.profiles,
            self.workdir / "webhook.log",
            port=self.webhook.port,
        )

    def upgrade(self, *sets: str) -> None:
        install_chart(
            self.cluster,
            self.webhook.url,
            self.webhook.ca_bundle_b64,
            "--values",
            str(self.values),
            *sets,
        )

    def namespace(self, prefix: str = "e2e") -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.cluster.create_namespace(name)
        return name

    def create(self, namespace: str, obj: dict[str, object], *args: str) -> str:
        """`kubectl create`; returns stdout, raises with kubectl's stderr on refusal."""
        return self.cluster.kubectl(
            "-n", namespace, "create", "-f", "-", *args, input=json.dumps(obj)
        ).stdout

    def get(self, namespace: str, kind: str, name: str) -> dict[str, object]:
        out = self.cluster.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout
        got: dict[str, object] = json.loads(out)
        return got


# Package scope: the release's webhook configuration mutates every labelled pod, so it must be
# gone before other packages' cluster tests run on the shared control plane.
@pytest.fixture(scope="package")
def bond_env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BondEnv]:
    workdir = tmp_path_factory.mktemp("dev")
    values = workdir / "e2e-values.yaml"
    values.write_text(yaml.safe_dump(EXTRA_VALUES))
    certs_dir = generate_certs(workdir / "certs")
    profiles = render_profiles(cluster, workdir / "profiles.yaml", "--values", str(values))
    webhook = start_webhook(cluster.kubeconfig, certs_dir, profiles, workdir / "webhook.log")
    env = BondEnv(cluster, workdir, certs_dir, profiles, webhook, values)
    try:
        env.upgrade()
        yield env
    finally:
        cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        env.webhook.stop()


def labelled_pod(name: str, **annotations: str) -> dict[str, object]:
    seed = yaml.safe_load((Path(__file__).parents[2] / "examples" / "seed-pod.yaml").read_text())
    seed["metadata"]["name"] = name
    if annotations:
        seed["metadata"]["annotations"] = annotations
    pod: dict[str, object] = seed
    return pod
