"""The chart against a real kube-apiserver: server-side dry-run of every value set, a real
`helm install` in url mode, and the builtin certificate flow run with the chart's own RBAC."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART, CI_VALUES, REPO, helm, parse, template_args
from tests.poll import poll
from tests.rigs.cluster import Cluster

pytestmark = pytest.mark.cluster

CERT_MANAGER_CRDS = Path(__file__).parent / "crds" / "cert-manager-minimal.yaml"


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"chart-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    # The node DaemonSet's own namespace: a dry-run cannot put objects in one it only dry-ran.
    cluster.create_namespace(f"{name}-node")
    yield name
    cluster.kubectl("delete", "namespace", name, f"{name}-node", "--wait=false")


@pytest.fixture(scope="module")
def cert_manager_crds(cluster: Cluster) -> Iterator[None]:
    cluster.kubectl("apply", "-f", str(CERT_MANAGER_CRDS))
    for crd in ("issuers.cert-manager.io", "certificates.cert-manager.io"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    yield
    cluster.kubectl("delete", "-f", str(CERT_MANAGER_CRDS), "--wait=false")


@pytest.mark.usefixtures("cert_manager_crds")
@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *[p.stem for p in CI_VALUES]]
)
def test_every_value_set_passes_server_side_dry_run(
    cluster: Cluster, namespace: str, values: Path | None
) -> None:
    rendered = helm(*template_args(*([values] if values else []), namespace=namespace)).stdout
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert result.returncode == 0, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(parse(rendered))


def test_the_minimal_cert_manager_crds_still_catch_a_typo(
    cluster: Cluster, namespace: str, cert_manager_crds: None
) -> None:
    bad = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "typo", "namespace": namespace},
        "spec": {"secretName": "x", "issuerRef": {"name": "y"}, "dnsName": ["oops"]},
    }
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.dnsName"' in result.stderr


@pytest.fixture(scope="module")
def enforcing(cluster: Cluster) -> Iterator[dict[str, str]]:
    """A namespace per Pod Security level enforced by the apiserver's PodSecurity admission,
    each with the installer's ServiceAccount (the pod names it; admission checks it exists)."""
    names = {level: f"psa-{level}-{secrets.token_hex(3)}" for level in ("baseline", "privileged")}
    for level, name in names.items():
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": level}},
        }
        cluster.kubectl("create", "-f", "-", input=json.dumps(namespace))
        cluster.wait_for_default_service_account(name)
        cluster.kubectl("-n", name, "create", "serviceaccount", "bond-injector-cni-installer")
    yield names
    for name in names.values():
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


HOST_PATHS = "hostPath volumes"  # of the volumes below, in whatever order the apiserver lists
# The helper's node folders: the CNI bin, its state and the agent's records, the netns folder, the
# socket folder.
HOST_PATH_VOLUMES = {"cni-bin", "cni-state", "netns", "records", "socket"}
CAPABILITIES = (
    'non-default capabilities (container "helper" must not include "NET_ADMIN", "SYS_ADMIN"'
)


@pytest.mark.parametrize(
    ("values", "violations", "absent"),
    [
        (
            None,
            ['hostPath volumes (volume "cni-bin")'],
            ["host namespaces", "privileged", "capabilities"],
        ),
        (
            CHART / "ci" / "helper-values.yaml",
            ["host namespaces (hostNetwork=true)", CAPABILITIES, HOST_PATHS],
            ["hostPID", "privileged"],
        ),
        (
            CHART / "ci" / "helper-procnetns-values.yaml",
            ["host namespaces (hostNetwork=true, hostPID=true)", '"SYS_PTRACE"', HOST_PATHS],
            ["privileged"],
        ),
    ],
    ids=["installer-only", "helper", "helper-procnetns"],
)
def test_the_installer_pod_needs_a_privileged_namespace(
    cluster: Cluster,
    enforcing: dict[str, str],
    values: Path | None,
    violations: list[str],
    absent: list[str],
) -> None:
    """What the README says about Pod Security, asked of the apiserver: the DaemonSet's pod is
    refused where `baseline` is enforced, naming each violation (and no privileged flag, nor
    hostPID unless asked for), and admitted where `privileged` is."""
    rendered = helm(*template_args(*([values] if values else []))).stdout
    (daemonset,) = [r.obj for r in parse(rendered) if r.kind == "DaemonSet"]
    template = daemonset["spec"]["template"]
    results = {}
    for level, namespace in enforcing.items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "cni-installer", "namespace": namespace, **template["metadata"]},
            "spec": template["spec"],
        }
        results[level] = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )
    assert results["privileged"].returncode == 0, results["privileged"].stderr
    refused = results["baseline"]
    assert refused.returncode != 0
    assert 'violates PodSecurity "baseline:latest"' in refused.stderr
    for violation in violations:
        assert violation in refused.stderr
        if violation == HOST_PATHS:
            listed = re.search(r"hostPath volumes \(volumes ([^)]*)\)", refused.stderr)
            assert listed, refused.stderr
            assert set(re.findall(r'"([^"]+)"', listed.group(1))) >= HOST_PATH_VOLUMES
    for word in absent:
        assert word not in refused.stderr


def _install(cluster: Cluster, release: str, namespace: str, *args: str) -> None:
    cluster.helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace", *args
    )


def test_helm_install_in_url_mode(cluster: Cluster) -> None:
    release, namespace = f"url-{secrets.token_hex(3)}", f"url-{secrets.token_hex(3)}"
    url_values = CHART / "ci" / "url-values.yaml"
    try:
        _install(cluster, release, namespace, "--values", str(url_values), "--wait")
        status = json.loads(cluster.helm("status", release, "-n", namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
        assert "keep that server running" in status["info"]["notes"]
        config = json.loads(
            cluster.kubectl(
                "get", "mutatingwebhookconfiguration", f"{release}-bond-injector", "-o", "json"
            ).stdout
        )
        client_config = config["webhooks"][0]["clientConfig"]
        assert client_config["url"] == "https://127.0.0.1:9443/mutate"
        assert (
            client_config["caBundle"]
            == (yaml.safe_load(url_values.read_text())["certificates"]["external"]["caBundle"])
        )
        nads = cluster.kubectl(
            "-n", namespace, "get", "network-attachment-definitions", "-o", "name"
        ).stdout.split()
        assert sorted(nads) == [
            "networkattachmentdefinition.k8s.cni.cncf.io/bond-net",
            "networkattachmentdefinition.k8s.cni.cncf.io/sriov-pf-a",
            "networkattachmentdefinition.k8s.cni.cncf.io/sriov-pf-b",
        ]
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    gone = cluster.kubectl(
        "get", "mutatingwebhookconfiguration", f"{release}-bond-injector", check=False
    )
    assert gone.returncode != 0


def _token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.kubectl(
        "-n", namespace, "create", "token", account, "--duration=10m"
    ).stdout.strip()
    ca = base64.b64encode(cluster.ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "rig", "cluster": {"server": cluster.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "rig", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _can_i(cluster: Cluster, namespace: str, account: str, *what: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", *what, "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:{account}", check=False,
    )  # fmt: skip
    return result.stdout.strip() == "yes"


def _hook_identity(cluster: Cluster, release: str, namespace: str) -> list[dict[str, Any]]:
    """The install hook's ServiceAccount and RBAC, which helm creates only around its hook Jobs
    (skipped here: no kubelet runs them), applied as the chart renders them less the hook
    annotations. Returns the objects, for cleanup."""
    rendered = helm(*template_args(release=release, namespace=namespace)).stdout
    objects = []
    for r in parse(rendered):
        if r.name.endswith("-certgen-hook") and r.kind != "Job":
            obj = dict(r.obj)
            obj["metadata"] = {k: v for k, v in r.obj["metadata"].items() if k != "annotations"}
            objects.append(obj)
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    items = {"apiVersion": "v1", "kind": "List", "items": objects}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(items))
    return objects


def _hook_job_args(release: str, namespace: str, phase: str) -> list[str]:
    rendered = helm(*template_args(release=release, namespace=namespace)).stdout
    (job,) = [r.obj for r in parse(rendered) if r.kind == "Job" and r.name.endswith(phase)]
    args: list[str] = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_builtin_certificates_with_the_charts_own_rbac(cluster: Cluster, tmp_path: Path) -> None:
    """Install without hooks (no kubelet runs Jobs here), then run the hook Jobs' and the renewal
    CronJob's exact commands, each as its own ServiceAccount: the RBAC suffices, and grants
    nothing more; only the install hook may create Secrets."""
    release, namespace = f"bi-{secrets.token_hex(3)}", f"bi-{secrets.token_hex(3)}"
    fullname = f"{release}-bond-injector"
    account, hook_account = f"{fullname}-certgen", f"{fullname}-certgen-hook"
    hook_objects: list[dict[str, Any]] = []
    # The image's entry point, as the Jobs run it: `bond-injector certs ensure ...`.
    entry = str(Path(sys.executable).with_name("bond-injector"))

    def run(sa: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        kubeconfig = _token_kubeconfig(cluster, namespace, sa, tmp_path / f"{sa}.kubeconfig")
        command = [entry, *args, "--kubeconfig", str(kubeconfig)]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)

    try:
        _install(cluster, release, namespace, "--no-hooks")
        hook_objects = _hook_identity(cluster, release, namespace)
        cron = json.loads(
            cluster.kubectl("-n", namespace, "get", "cronjob", account, "-o", "json").stdout
        )
        container: dict[str, Any] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["command"] == ["bond-injector"]
        assert container["args"] == _hook_job_args(release, namespace, "-post")

        # The renewal identity cannot make the Secrets: only the install hook can.
        refused = run(account, container["args"])
        assert refused.returncode != 0
        assert "forbidden" in refused.stderr.lower()
        pre = run(hook_account, _hook_job_args(release, namespace, "-pre"))
        assert pre.returncode == 0, pre.stderr
        assert f"wrote CA secret {namespace}/{fullname}-webhook-tls-ca" in pre.stdout
        post = run(hook_account, _hook_job_args(release, namespace, "-post"))
        assert post.returncode == 0, post.stderr
        assert f"patched caBundle of mutatingwebhookconfiguration {fullname}" in post.stdout

        healthy = run(account, container["args"])
        assert healthy.returncode == 0, healthy.stderr
        assert "healthy" in healthy.stdout and "nothing to change" in healthy.stdout
        # A renewal (forced: renew when less than 400 days are left of 365) needs only update.
        renewed = run(account, [*container["args"], "--renew-before=400d"])
        assert renewed.returncode == 0, renewed.stderr
        assert f"wrote serving secret {namespace}/{fullname}-webhook-tls" in renewed.stdout

        secret = json.loads(
            cluster.kubectl(
                "-n", namespace, "get", "secret", f"{fullname}-webhook-tls", "-o", "json"
            ).stdout
        )
        config = json.loads(
            cluster.kubectl("get", "mutatingwebhookconfiguration", fullname, "-o", "json").stdout
        )
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        _forged_webhook_patches_are_refused(cluster, namespace, account, fullname, tmp_path)

        assert _can_i(cluster, namespace, hook_account, "create", "secrets")
        assert not _can_i(cluster, namespace, account, "create", "secrets")
        assert _can_i(cluster, namespace, account, "update", f"secret/{fullname}-webhook-tls")
        assert not _can_i(cluster, namespace, account, "get", "secret/some-other-secret")
        assert not _can_i(cluster, namespace, account, "list", "secrets")
        assert not _can_i(cluster, namespace, account, "delete", f"secret/{fullname}-webhook-tls")
        assert not _can_i(
            cluster, namespace, account, "patch", "mutatingwebhookconfiguration/other"
        )
        webhook_sa = f"{fullname}-webhook"
        assert _can_i(cluster, namespace, webhook_sa, "list", "network-attachment-definitions")
        assert not _can_i(cluster, namespace, webhook_sa, "get", "secrets")
        assert not _can_i(
            cluster, namespace, webhook_sa, "create", "network-attachment-definitions"
        )

        # An upgrade re-applies the webhook configuration: the patched caBundle must survive it.
        cluster.helm(
            "upgrade", release, str(CHART), "--namespace", namespace, "--no-hooks",
            "--set", "webhook.failurePolicy=Ignore",
        )  # fmt: skip
        upgraded = json.loads(
            cluster.kubectl("get", "mutatingwebhookconfiguration", fullname, "-o", "json").stdout
        )["webhooks"][0]
        assert upgraded["failurePolicy"] == "Ignore"
        assert upgraded["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", "--no-hooks", check=False)
        for obj in hook_objects:
            if obj["kind"].startswith("Cluster"):
                cluster.kubectl("delete", obj["kind"], obj["metadata"]["name"], check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _forged_webhook_patches_are_refused(
    cluster: Cluster, namespace: str, account: str, config: str, tmp_path: Path
) -> None:
    """The renewal CronJob's token may patch the configuration (RBAC), but the chart's policy
    lets it change caBundle only: a patch pointing the webhook elsewhere, or widening what it
    mutates, is refused, naming the configuration and the fix."""
    kubeconfig = _token_kubeconfig(cluster, namespace, account, tmp_path / "forger.kubeconfig")

    def patch(ops: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "--kubeconfig", str(kubeconfig), "patch", "mutatingwebhookconfiguration", config,
            "--type=json", "-p", json.dumps(ops), *extra, check=False,
        )  # fmt: skip

    url = [
        {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
        {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://evil.invalid/m"},
    ]
    # A new policy is in force once the apiserver's informer has it: ask with dry-runs till then.
    poll(
        lambda: patch(url, "--dry-run=server").returncode != 0,
        timeout=30,
        what="the certgen ValidatingAdmissionPolicy to be enforced",
        interval=0.2,
    )
    before = cluster.kubectl("get", "mutatingwebhookconfiguration", config, "-o", "json").stdout
    every_pod = {"op": "replace", "path": "/webhooks/0/objectSelector", "value": {}}
    label = {"op": "add", "path": "/metadata/labels/forged", "value": "yes"}
    forged: list[tuple[list[dict[str, Any]], str]] = [
        (url, "not other fields of webhook(s) pods.bond-injector.io"),
        ([every_pod], "not other fields of webhook(s) pods.bond-injector.io"),
        ([label], "may not change metadata of mutatingwebhookconfiguration"),
    ]
    for ops, what in forged:
        refused = patch(ops)
        assert refused.returncode != 0, ops
        assert f"ValidatingAdmissionPolicy '{config}-certgen'" in refused.stderr
        assert f"mutatingwebhookconfiguration {config}" in refused.stderr and what in refused.stderr
        assert "clientConfig.caBundle" in refused.stderr
    after = cluster.kubectl("get", "mutatingwebhookconfiguration", config, "-o", "json").stdout
    assert json.loads(after)["webhooks"] == json.loads(before)["webhooks"]


def test_a_bonded_pods_networks_cannot_change_after_admission(cluster: Cluster) -> None:
    """The webhook sees CREATE only; the chart's policy refuses every later change of the
    networks annotation (or of the selecting label) on a labelled pod, through pods and
    pods/status alike; other pods and other annotations are left alone."""
    suffix = secrets.token_hex(3)
    namespace = f"nets-{suffix}"
    rendered = helm(*template_args(sets=(f"fullnameOverride=nets-{suffix}",))).stdout
    policy = [r.obj for r in parse(rendered) if r.name == f"nets-{suffix}-networks"]
    assert sorted(o["kind"] for o in policy) == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    networks = "k8s.v1.cni.cncf.io/networks"
    try:
        cluster.create_namespace(namespace)
        items = {"apiVersion": "v1", "kind": "List", "items": policy}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(items))
        for name, labels in (("bonded", {"bond": "true"}), ("plain", {})):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {networks: "bond-injector/sriov-pf-a@net1"},
                },
                "spec": {
                    "nodeName": "node-a",
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            }
            cluster.kubectl("create", "-f", "-", input=json.dumps(pod))

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            return cluster.kubectl("-n", namespace, *args, check=False)

        evil = f"{networks}=other-team/their-nad@net1"
        poll(
            lambda: (
                kubectl(
                    "annotate", "pod", "bonded", "--overwrite", evil, "--dry-run=server"
                ).returncode
                != 0
            ),
            timeout=30,
            what="the networks ValidatingAdmissionPolicy to be enforced",
            interval=0.2,
        )
        status_patch = json.dumps({"metadata": {"annotations": {networks: "other/nad"}}})
        for args, message in [
            (
                ["annotate", "pod", "bonded", "--overwrite", evil],
                "from bond-injector/sriov-pf-a@net1 to other-team/their-nad@net1",
            ),
            (["annotate", "pod", "bonded", f"{networks}-"], "to (none)"),
            (
                ["patch", "pod", "bonded", "--subresource=status", "--type=merge",
                 "-p", status_patch],
                "to other/nad",
            ),
            (["label", "pod", "bonded", "bond-"], "the label(s) bond (metadata.labels)"),
        ]:  # fmt: skip
            refused = kubectl(*args)
            assert refused.returncode != 0, args
            assert f"pod {namespace}/bonded" in refused.stderr and message in refused.stderr
            assert "delete the pod and create it again" in refused.stderr
        got = json.loads(kubectl("get", "pod", "bonded", "-o", "json").stdout)["metadata"]
        assert got["annotations"][networks] == "bond-injector/sriov-pf-a@net1"
        assert got["labels"] == {"bond": "true"}
        allowed = kubectl("annotate", "pod", "bonded", "example.com/note=fine")
        assert allowed.returncode == 0, allowed.stderr
        plain = kubectl("annotate", "pod", "plain", "--overwrite", evil)
        assert plain.returncode == 0, plain.stderr
    finally:
        for obj in policy:
            cluster.kubectl("delete", obj["kind"], obj["metadata"]["name"], check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _generation(cluster: Cluster, namespace: str, kind: str, name: str) -> int:
    obj = json.loads(cluster.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
    generation: int = obj["metadata"]["generation"]
    return generation


def test_upgrades_leave_the_node_pods_alone_unless_the_plugin_changes(cluster: Cluster) -> None:
    """A real install and two real upgrades: the DaemonSet's spec (its generation, which the
    controller rolls pods on) moves only with the plugin. The node part lives in its own
    namespace, and the webhook gets the chart's PriorityClass."""
    release, namespace = f"up-{secrets.token_hex(3)}", f"up-{secrets.token_hex(3)}"
    nodes = f"{namespace}-node"
    fullname = f"{release}-bond-injector"
    daemonset = f"{fullname}-cni-installer"
    try:
        _install(
            cluster, release, namespace, "--no-hooks", "--set", "cniInstaller.helper.enabled=true"
        )
        labels = json.loads(cluster.kubectl("get", "namespace", nodes, "-o", "json").stdout)[
            "metadata"
        ]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
        assert _generation(cluster, nodes, "daemonset", daemonset) == 1
        account = cluster.kubectl("-n", nodes, "get", "serviceaccount", daemonset, check=False)
        assert account.returncode == 0, account.stderr
        absent = cluster.kubectl("-n", namespace, "get", "daemonset", daemonset, check=False)
        assert absent.returncode != 0
        priority = json.loads(
            cluster.kubectl("get", "priorityclass", f"{fullname}-webhook", "-o", "json").stdout
        )
        assert priority["value"] == 1000000
        deployment = json.loads(
            cluster.kubectl(
                "-n", namespace, "get", "deployment", f"{fullname}-webhook", "-o", "json"
            ).stdout
        )
        assert (
            deployment["spec"]["template"]["spec"]["priorityClassName"]
            == priority["metadata"]["name"]
        )

        def upgrade(*sets: str) -> None:
            args = [a for item in sets for a in ("--set", item)]
            cluster.helm(
                "upgrade", release, str(CHART), "--namespace", namespace, "--no-hooks",
                "--reuse-values", *args,
            )  # fmt: skip

        upgrade("webhook.replicaCount=3", "webhook.failurePolicy=Ignore")
        assert _generation(cluster, namespace, "deployment", f"{fullname}-webhook") == 2
        assert _generation(cluster, nodes, "daemonset", daemonset) == 1  # helpers keep running
        upgrade("cniInstaller.image.tag=0.2.0")
        assert _generation(cluster, nodes, "daemonset", daemonset) == 2
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", "--no-hooks", check=False)
        for name in (namespace, nodes):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    gone = cluster.kubectl("get", "priorityclass", f"{fullname}-webhook", check=False)
    assert gone.returncode != 0


def test_a_second_release_on_the_cluster_is_refused_with_the_first_ones_name(
    cluster: Cluster,
) -> None:
    """Two releases would both mutate labelled pods and install to the same node path: a real
    `helm install` of a second one fails at render time, naming the first; the first one still
    upgrades, and once it is gone the second installs."""
    first, second = f"one-{secrets.token_hex(3)}", f"two-{secrets.token_hex(3)}"
    ns_one, ns_two = f"{first}-ns", f"{second}-ns"
    url_values = str(CHART / "ci" / "url-values.yaml")
    try:
        _install(cluster, first, ns_one, "--values", url_values)
        refused = cluster.helm(
            "install", second, str(CHART), "--namespace", ns_two, "--create-namespace",
            "--values", url_values, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert (
            f'bond-injector is already installed on this cluster by release "{first}" in '
            f'namespace "{ns_one}" (mutatingwebhookconfiguration {first}-bond-injector)'
        ) in refused.stderr
        assert f"helm upgrade {first} -n {ns_one}" in refused.stderr
        listed = cluster.helm("list", "-n", ns_two, "-q").stdout.split()
        assert second not in listed
        cluster.helm(
            "upgrade", first, str(CHART), "-n", ns_one, "--values", url_values,
            "--set", "webhook.timeoutSeconds=3",
        )  # fmt: skip
        cluster.helm("uninstall", first, "-n", ns_one, "--wait")
        _install(cluster, second, ns_two, "--values", url_values)
    finally:
        for release, ns in ((first, ns_one), (second, ns_two)):
            cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_release_namespace_can_enforce_restricted(cluster: Cluster) -> None:
    """With the node DaemonSet in its own namespace, every pod left in the release namespace
    (webhook, certificate Jobs and CronJob, the helm test) is admitted under Pod Security
    `restricted`, asked of the apiserver with server-side dry-runs."""
    namespace = f"restricted-{secrets.token_hex(3)}"
    rendered = parse(helm(*template_args(namespace=namespace)).stdout)
    templates: dict[str, dict[str, Any]] = {}
    for r in rendered:
        if r.obj["metadata"].get("namespace") != namespace:
            continue
        if r.kind in ("Deployment", "Job"):
            templates[r.name] = r.obj["spec"]["template"]["spec"]
        elif r.kind == "CronJob":
            templates[r.name] = r.obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif r.kind == "Pod":
            templates[r.name] = r.obj["spec"]
    assert len(templates) == 5, sorted(templates)  # webhook, pre, post, renewal, helm test
    assert not [
        r for r in rendered if r.kind == "DaemonSet" and r.obj["metadata"]["namespace"] == namespace
    ]
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": labels},
    }
    try:
        cluster.kubectl("create", "-f", "-", input=json.dumps(ns))
        cluster.wait_for_default_service_account(namespace)
        for name, spec in templates.items():
            account = spec.get("serviceAccountName")
            if account:
                cluster.kubectl("-n", namespace, "create", "serviceaccount", account, check=False)
            admitted = {k: v for k, v in spec.items() if k != "priorityClassName"}  # none here
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name[:50].lower(), "namespace": namespace},
                "spec": admitted,
            }
            result = cluster.kubectl(
                "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
            )
            assert result.returncode == 0, (name, result.stderr)
            assert "violate" not in result.stderr, (name, result.stderr)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
