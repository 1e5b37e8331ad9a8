"""The chart, rendered by the real helm: lint, every ci/ value set, and the properties we promise.

The cluster tier (test_chart_cluster.py) sends the same renders to a real kube-apiserver.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    NODE_NAMESPACE,
    RELEASE,
    Rendered,
    helm,
    kinds,
    one,
    render,
    template_args,
)
from webhook.bondconfig import check_bond_config
from webhook.profiles import parse_profiles

CI_IDS = [p.stem for p in CI_VALUES]
FULLNAME = "bond-injector"  # the release name already contains the chart name
CLUSTER_SCOPED = frozenset(
    [
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PriorityClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
)
NODE_COMPONENTS = frozenset(["cni-installer", "agent"])  # in the node namespace
HELPER = CHART / "ci" / "helper-values.yaml"


@pytest.fixture(scope="module")
def default() -> list[Rendered]:
    return render()


def test_ci_value_sets_exist() -> None:
    assert {p.stem for p in CI_VALUES} >= {
        "certmanager-values",
        "url-values",
        "no-nads-values",
        "failurepolicy-ignore-values",
        "helper-values",
        "helper-procnetns-values",
        "networkpolicy-values",
    }


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *CI_IDS])
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        args += ["--values", str(values)]
    result = helm(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *CI_IDS])
def test_every_value_set_renders_labelled_objects_one_kind_per_file(values: Path | None) -> None:
    objects = render(*([values] if values else []))
    assert objects
    per_file: dict[str, set[str]] = {}
    for r in objects:
        per_file.setdefault(r.source, set()).add(r.kind)
        labels = r.obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "bond-injector", r.source
        assert labels.get("app.kubernetes.io/instance") == RELEASE, r.source
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", r.source
        assert "app.kubernetes.io/component" in labels, r.source
        if r.kind not in CLUSTER_SCOPED:
            node = labels["app.kubernetes.io/component"] in NODE_COMPONENTS
            expected = NODE_NAMESPACE if node else NAMESPACE
            assert r.obj["metadata"]["namespace"] == expected, r.source
        # `<component>-<kind>.yaml`, one kind per file (cert-manager's layout).
        stem = Path(r.source).stem
        assert stem.rsplit("-", 1)[-1] in {r.kind.lower(), "pre", "post", "test"}, (
            f"{r.source} should be named <component>-{r.kind.lower()}.yaml"
        )
    assert all(len(k) == 1 for k in per_file.values()), per_file


def test_defaults_render_the_whole_installation(default: list[Rendered]) -> None:
    assert kinds(default) == sorted(
        ["ClusterRole"] * 3
        + ["ClusterRoleBinding"] * 3
        + ["Role"] * 2
        + ["RoleBinding"] * 2
        + ["ServiceAccount"] * 4
        + ["ConfigMap", "CronJob", "DaemonSet", "Deployment", "Job", "Job"]
        + ["MutatingWebhookConfiguration", "PodDisruptionBudget", "Pod", "Service"]
        + ["PriorityClass", "NetworkPolicy", "Namespace"]
        + ["NetworkAttachmentDefinition"] * 3
        + ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 2
    )


def test_webhook_configuration_defaults(default: list[Rendered]) -> None:
    config = one(default, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == FULLNAME
    assert "annotations" not in config["metadata"]  # builtin mode: the certgen Job patches caBundle
    (hook,) = config["webhooks"]
    assert hook["name"] == "pods.bond-injector.io"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert hook["failurePolicy"] == "Fail"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["timeoutSeconds"] == 5
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["objectSelector"] == {"matchLabels": {"bond": "true"}}
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [NAMESPACE, "kube-system"],
            },
            {"key": "bond-injector.io/disabled", "operator": "NotIn", "values": ["true"]},
        ]
    }
    assert hook["clientConfig"] == {
        "service": {
            "name": f"{FULLNAME}-webhook",
            "namespace": NAMESPACE,
            "path": "/mutate",
            "port": 443,
        }
    }


def test_url_mode_points_at_the_url_and_runs_no_webhook_pods() -> None:
    objects = render(CHART / "ci" / "url-values.yaml")
    hook = one(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    ca = yaml.safe_load((CHART / "ci" / "url-values.yaml").read_text())["certificates"]
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate",
        "caBundle": ca["external"]["caBundle"],
    }
    present = set(kinds(objects))
    assert not present & {"Deployment", "Service", "PodDisruptionBudget", "Job", "CronJob"}
    assert "DaemonSet" not in present  # the ci set also turns the CNI installer off
    test_pod = one(objects, "Pod")
    env = {e["name"]: e["value"] for e in test_pod["spec"]["containers"][0]["env"]}
    assert env["READYZ_URL"] == "https://127.0.0.1:9443/readyz"


def test_cert_manager_mode_injects_the_ca_from_the_certificate() -> None:
    objects = render(CHART / "ci" / "certmanager-values.yaml")
    config = one(objects, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{FULLNAME}-webhook"
    }
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    cert = one(objects, "Certificate", "-webhook")
    svc = f"{FULLNAME}-webhook"
    assert cert["spec"]["dnsNames"] == [
        svc,
        f"{svc}.{NAMESPACE}",
        f"{svc}.{NAMESPACE}.svc",
        f"{svc}.{NAMESPACE}.svc.cluster.local",
    ]
    assert cert["spec"]["secretName"] == f"{svc}-tls"
    assert cert["spec"]["issuerRef"]["name"] == f"{FULLNAME}-ca"
    assert one(objects, "Issuer", "-ca")["spec"] == {"ca": {"secretName": f"{FULLNAME}-ca"}}
    assert one(objects, "Certificate", "-ca")["spec"]["isCA"] is True
    assert not {"Job", "CronJob"} & set(kinds(objects))
    deployment = one(objects, "Deployment")
    (tls,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == f"{svc}-tls"


def test_cert_manager_with_a_cluster_issuer_creates_only_the_certificate() -> None:
    objects = render(CHART / "ci" / "certmanager-clusterissuer-values.yaml")
    assert [r.kind for r in objects if "cert-manager" in r.obj["apiVersion"]] == ["Certificate"]
    cert = one(objects, "Certificate")
    assert cert["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_failure_policy_ignore_and_the_other_knobs() -> None:
    objects = render(CHART / "ci" / "failurepolicy-ignore-values.yaml")
    hook = one(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["reinvocationPolicy"] == "Never"
    assert hook["timeoutSeconds"] == 3
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": [NAMESPACE, "kube-system", "monitoring"],
        },
        {"key": "example.com/no-bond", "operator": "NotIn", "values": ["true"]},
    ]
    assert "PodDisruptionBudget" not in kinds(objects)
    assert "CronJob" not in kinds(objects)
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 3
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        in (spec["template"]["spec"]["affinity"]["podAntiAffinity"])
    )
    daemonset = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert daemonset["volumes"][0]["hostPath"]["path"] == "/var/lib/cni/bin"


def test_webhook_deployment_is_hardened(default: list[Rendered]) -> None:
    deployment = one(default, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "96Mi"}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        # The plain health port: probes carry no client certificate, so they work with clientAuth.
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTP"}
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container["args"][:2] == ["serve", "--port=8443"]
    assert "--profiles=/etc/bond-injector/profiles/profiles.yaml" in container["args"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert (
        anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (spec["selector"]["matchLabels"])
    )
    pdb = one(default, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": spec["selector"]}
    assert "checksum/profiles" in spec["template"]["metadata"]["annotations"]


def test_the_header_timeout_reaches_serve(default: list[Rendered]) -> None:
    """Slow clients are closed after 10 s by default; the value sets `serve --header-timeout`."""
    (container,) = one(default, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--header-timeout=10" in container["args"]
    (changed,) = one(render(sets=("webhook.headerTimeoutSeconds=3",)), "Deployment")["spec"][
        "template"
    ]["spec"]["containers"]
    assert "--header-timeout=3" in changed["args"]


def test_the_serving_limits_reach_serve(default: list[Rendered]) -> None:
    """The whole-request deadline, the concurrency bound and the plain port (issue 21)."""
    (container,) = one(default, "Deployment")["spec"]["template"]["spec"]["containers"]
    for arg in ("--request-timeout=10", "--limit-concurrency=256", "--health-port=8081"):
        assert arg in container["args"]
    assert not [a for a in container["args"] if a.startswith("--client-ca")]
    sets = ("webhook.requestTimeoutSeconds=12", "webhook.limitConcurrency=64")
    (changed,) = one(render(sets=sets), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {"--request-timeout=12", "--limit-concurrency=64"} <= set(changed["args"])


def test_client_auth_mounts_the_apiservers_client_ca() -> None:
    sets = ("webhook.clientAuth.enabled=true", "webhook.clientAuth.caConfigMap=apiserver-clients")
    objects = render(sets=sets)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--client-ca=/etc/bond-injector/client-ca/ca.crt" in container["args"]
    assert {"name": "client-ca", "configMap": {"name": "apiserver-clients"}} in pod["volumes"]
    mount = {"name": "client-ca", "mountPath": "/etc/bond-injector/client-ca", "readOnly": True}
    assert mount in container["volumeMounts"]
    (test,) = one(objects, "Pod")["spec"]["containers"]
    assert {"name": "CLIENT_AUTH", "value": "1"} in test["env"]
    result = helm(*template_args(sets=("webhook.clientAuth.enabled=true",)), check=False)
    assert result.returncode != 0
    assert "webhook.clientAuth.caConfigMap: name the ConfigMap" in result.stderr


def test_one_replica_gets_a_budget_a_drain_can_meet() -> None:
    """minAvailable: 1 over one pod would block every node drain for good."""
    objects = render(CHART / "ci" / "networkpolicy-values.yaml")
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in one(objects, "PodDisruptionBudget")["spec"]
    two = render(sets=("webhook.replicaCount=2", "webhook.podDisruptionBudget.minAvailable=1"))
    assert one(two, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_the_webhook_runs_at_the_charts_own_priority(default: list[Rendered]) -> None:
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == f"{FULLNAME}-webhook"
    priority = one(default, "PriorityClass")
    assert priority["metadata"]["name"] == f"{FULLNAME}-webhook"
    assert priority["value"] == 1000000  # an integer: the apiserver refuses 1e+06
    assert priority["globalDefault"] is False
    # A class of your own replaces it, and the chart then creates none.
    objects = render(CHART / "ci" / "networkpolicy-values.yaml")
    assert "PriorityClass" not in kinds(objects)
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    off = render(sets=("webhook.priorityClass.create=false",))
    assert "PriorityClass" not in kinds(off)
    assert "priorityClassName" not in one(off, "Deployment")["spec"]["template"]["spec"]


def test_the_network_policy_is_on_and_admits_only_the_apiserver(
    default: list[Rendered],
) -> None:
    """On by default: the admission port only (from anywhere: the chart cannot know the
    apiserver's addresses), the health port to no other pod, egress to the apiserver's ports."""
    policy = one(default, "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert "NetworkPolicy" not in kinds(render(sets=("webhook.networkPolicy.enabled=false",)))
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    scraped = one(
        render(
            sets=(
                "webhook.networkPolicy.metricsFrom.prometheus.namespaceSelector.matchLabels"
                ".kubernetes\\.io/metadata\\.name=mon",
            )
        ),
        "NetworkPolicy",
    )["spec"]
    assert scraped["ingress"][1] == {
        "ports": [{"protocol": "TCP", "port": 8081}],
        "from": [monitoring],
    }
    objects = render(CHART / "ci" / "networkpolicy-values.yaml")
    policy = one(objects, "NetworkPolicy")["spec"]
    webhook = one(objects, "Deployment")["spec"]
    assert policy["podSelector"] == webhook["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    cidrs = [{"ipBlock": {"cidr": "10.0.0.0/24"}}, {"ipBlock": {"cidr": "fd00::/64"}}]
    assert policy["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}], "from": cidrs}]
    assert policy["egress"] == [{"ports": [{"protocol": "TCP", "port": 6443}], "to": cidrs}]
    (container,) = webhook["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == 8443  # the port the policy opens
    anywhere = one(render(sets=("webhook.networkPolicy.enabled=true",)), "NetworkPolicy")["spec"]
    assert anywhere["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]}]
    assert anywhere["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
    ]


def _rules(objects: list[Rendered], kind: str, suffix: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(objects, kind, suffix)["rules"]
    return rules


def test_rbac_is_least_privilege(default: list[Rendered]) -> None:
    assert _rules(default, "ClusterRole", "-webhook") == [
        {
            "apiGroups": ["k8s.cni.cncf.io"],
            "resources": ["network-attachment-definitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    secret = f"{FULLNAME}-webhook-tls"
    read_update = {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": [secret, f"{secret}-ca"],
        "verbs": ["get", "update"],
    }
    # Only the install hook makes the Secrets; the renewal CronJob only renews them.
    assert _rules(default, "Role", "-certgen-hook") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        read_update,
    ]
    assert _rules(default, "Role", "-certgen") == [read_update]
    for suffix in ("-certgen", "-certgen-hook"):
        assert _rules(default, "ClusterRole", suffix) == [
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [FULLNAME],
                "verbs": ["get", "patch"],
            }
        ]
    hook_sa = one(default, "ServiceAccount", "-certgen-hook")
    assert "pre-install" in hook_sa["metadata"]["annotations"]["helm.sh/hook"]


def test_certgen_jobs_run_ensure_before_and_patch_after(default: list[Rendered]) -> None:
    jobs = {r.name: r.obj for r in default if r.kind == "Job"}
    pre, post = jobs[f"{FULLNAME}-certgen-pre"], jobs[f"{FULLNAME}-certgen-post"]
    assert pre["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert post["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"

    def args(job: dict[str, Any]) -> list[str]:
        spec = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["command"] == ["bond-injector"]
        assert spec["serviceAccountName"] == f"{FULLNAME}-certgen-hook"
        result: list[str] = container["args"]
        return result

    expected = [
        "certs",
        "ensure",
        f"--namespace={NAMESPACE}",
        f"--secret={FULLNAME}-webhook-tls",
        f"--service={FULLNAME}-webhook",
        "--renew-before=30d",
        "--validity=365d",
        "--ca-validity=3650d",
    ]
    assert args(pre) == expected
    assert args(post) == [*expected, f"--webhook-config={FULLNAME}"]
    cron = one(default, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["containers"][0]["args"] == args(post)
    assert cron["serviceAccountName"] == f"{FULLNAME}-certgen"


def _installer_pod(objects: list[Rendered]) -> dict[str, Any]:
    pod: dict[str, Any] = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    return pod


# The installer container, as the chart renders it without the helper (the default), less
# INSTALL_ONLY, which the helper's init container adds.
INSTALL_ENV = [{"name": "CNI_BIN_DIR", "value": "/host/cni/bin"}]
INSTALL_CONTAINER: dict[str, Any] = {
    "name": "install",
    "image": "ghcr.io/bond-injector/cni:0.1.0",
    "imagePullPolicy": "IfNotPresent",
    "command": ["/usr/local/bin/install-bond-cni"],
    "env": INSTALL_ENV,
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    "securityContext": {
        "runAsUser": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
    "volumeMounts": [{"name": "cni-bin", "mountPath": "/host/cni/bin"}],
}
SOCKET = "/run/bond-cni/helper.sock"  # the client's default: the runtime passes no other


def test_cni_installer_reaches_sriov_nodes_with_its_own_token_less_account(
    default: list[Rendered],
) -> None:
    spec = _installer_pod(default)
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {
        "kubernetes.io/os": "linux",
        "feature.node.kubernetes.io/network-sriov.capable": "true",
    }
    assert spec["volumes"] == [
        {"name": "cni-bin", "hostPath": {"path": "/opt/cni/bin", "type": "DirectoryOrCreate"}}
    ]
    account = one(default, "ServiceAccount", "-cni-installer")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    everywhere = _installer_pod(render(sets=("cniInstaller.nodeSelector=null",)))
    assert "nodeSelector" not in everywhere
    sriov = "feature\\.node\\.kubernetes\\.io/network-sriov\\.capable"
    linux = _installer_pod(render(sets=(f"cniInstaller.nodeSelector.{sriov}=null",)))
    assert linux["nodeSelector"] == {"kubernetes.io/os": "linux"}
    own = _installer_pod(render(sets=("cniInstaller.nodeSelector.example\\.com/bond=yes",)))
    assert own["nodeSelector"]["example.com/bond"] == "yes"


def test_without_the_helper_the_installer_runs_alone_without_host_access(
    default: list[Rendered],
) -> None:
    spec = _installer_pod(default)
    for key in ("hostPID", "hostNetwork", "initContainers"):
        assert key not in spec, key
    assert spec["terminationGracePeriodSeconds"] == 5
    assert spec["containers"] == [INSTALL_CONTAINER]  # installs, then sleeps: no INSTALL_ONLY


def _template(objects: list[Rendered]) -> dict[str, Any]:
    template: dict[str, Any] = one(objects, "DaemonSet")["spec"]["template"]
    return template


def test_upgrades_roll_the_node_pods_only_when_the_plugin_or_its_settings_change() -> None:
    base = _template(render(HELPER))
    assert "bond-injector.io/installed-by-revision" not in base["metadata"]["annotations"]
    unrelated = (
        "webhook.replicaCount=5",
        "webhook.failurePolicy=Ignore",
        "networks.bond.mtu=9000",
        "certificates.validity=90d",
    )
    # The pod template is what the DaemonSet controller compares: unchanged, no pod restarts.
    assert _template(render(HELPER, sets=unrelated)) == base
    changes = (
        "cniInstaller.image.tag=0.2.0",
        "cniInstaller.helper.resources.limits.memory=1Gi",
        "cniInstaller.helper.procNetns=true",
        "cniInstaller.image.pullPolicy=Always",
    )
    checksums = {base["metadata"]["annotations"]["checksum/plugin"]}
    for change in changes:
        template = _template(render(HELPER, sets=(change,)))
        checksums.add(template["metadata"]["annotations"]["checksum/plugin"])
    assert len(checksums) == 1 + len(changes)


def test_the_helper_runs_on_the_host_network_with_two_capabilities() -> None:
    spec = _installer_pod(render(HELPER))
    assert spec["hostNetwork"] is True  # links move between the node's netns and the pod's
    assert "hostPID" not in spec
    assert spec["terminationGracePeriodSeconds"] == 30
    (install,) = spec["initContainers"]
    assert install == {
        **INSTALL_CONTAINER,
        "env": [*INSTALL_ENV, {"name": "INSTALL_ONLY", "value": "1"}],
    }
    (helper,) = spec["containers"]
    assert helper["name"] == "helper"
    assert helper["image"] == install["image"]
    # What the node allows any caller of the socket: by default the four usual IPAM plugins,
    # no node links, netns only under /run/netns and /var/run/netns (issue 21).
    assert helper["command"] == [
        "/opt/cni/bin/bond",
        "serve",
        "--cni-path",
        "/opt/cni/bin",
        "--ipam-plugins",
        "dhcp,host-local,static,whereabouts",
        "--socket",
        SOCKET,
    ]
    assert helper["securityContext"] == {
        "privileged": False,
        "runAsUser": 0,
        "runAsNonRoot": False,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]},
    }
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["name"]: m for m in helper["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    # Every node folder at its own path, so the paths a runtime passes mean the same inside.
    assert {n: (volumes[n], m["mountPath"]) for n, m in mounts.items()} == {
        "cni-bin": ("/opt/cni/bin", "/opt/cni/bin"),
        "cni-state": ("/var/lib/cni", "/var/lib/cni"),
        "netns": ("/run/netns", "/run/netns"),
        "socket": ("/run/bond-cni", "/run/bond-cni"),
        "logs": ("/var/log/bond-cni", "/var/log/bond-cni"),  # a config's logFile, honoured
        "records": ("/var/lib/bond-cni", "/var/lib/bond-cni"),
        "extra-whereabouts": ("/etc/cni/net.d/whereabouts.d", "/etc/cni/net.d/whereabouts.d"),
    }
    # Netns files are bind mounts the runtime makes later: they must propagate into the pod.
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"
    assert [n for n, m in mounts.items() if m.get("readOnly")] == [
        "cni-bin",
        "netns",
        "extra-whereabouts",
    ]
    assert helper["resources"] == {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    probe = ["/opt/cni/bin/bond", "probe", "--socket", SOCKET]
    readiness, liveness = helper["readinessProbe"], helper["livenessProbe"]
    assert readiness["exec"] == {"command": probe}
    assert liveness["exec"] == {"command": probe}
    # A probe is a Python start-up, and the helper's imports take seconds on a slow node.
    assert readiness["timeoutSeconds"] == liveness["timeoutSeconds"] == 10
    assert liveness["initialDelaySeconds"] >= 30
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


def test_proc_netns_paths_add_host_pid_and_sys_ptrace_only() -> None:
    spec = _installer_pod(render(CHART / "ci" / "helper-procnetns-values.yaml"))
    assert spec["hostPID"] is True
    (helper,) = spec["containers"]
    assert helper["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
    }
    assert helper["securityContext"]["privileged"] is False
    assert helper["command"][-3:] == ["--proc-netns", "--socket", SOCKET]


def test_the_node_side_helper_settings_become_its_flags() -> None:
    """Host links and the IPAM allowlist are the node's to set (values), never a NAD's."""
    sets = (
        "cniInstaller.helper.enabled=true",
        "cniInstaller.helper.allowHostLinks=true",
        "cniInstaller.helper.ipamPlugins.dhcp=false",
        "cniInstaller.helper.ipamPlugins.my-ipam=true",
    )
    (helper,) = _installer_pod(render(sets=sets))["containers"]
    assert helper["command"][4:7] == [
        "--ipam-plugins",
        "host-local,my-ipam,static,whereabouts",
        "--allow-host-links",
    ]


@pytest.mark.parametrize(
    ("sets", "bond"),
    [
        (("cniInstaller.hostBinDir=/var/lib/cni/bin",), "/var/lib/cni/bin/bond"),
        (("cniInstaller.hostBinDir=/usr/libexec/cni/",), "/usr/libexec/cni/bond"),
    ],
    ids=["host-bin-dir", "trailing-slash"],
)
def test_the_helper_runs_the_nodes_copy_at_host_bin_dir_on_the_socket(
    sets: tuple[str, ...], bond: str
) -> None:
    spec = _installer_pod(render(HELPER, sets=sets))
    (helper,) = spec["containers"]
    # IPAM plugins come from the node's CNI bin folder, never from a caller's CNI_PATH
    assert helper["command"] == [
        bond,
        "serve",
        "--cni-path",
        bond[: -len("/bond")],
        "--ipam-plugins",
        "dhcp,host-local,static,whereabouts",
        "--socket",
        SOCKET,
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert helper[probe]["exec"]["command"] == [bond, "probe", "--socket", SOCKET]
    (mount,) = [m for m in helper["volumeMounts"] if m["name"] == "cni-bin"]
    assert bond == mount["mountPath"] + "/bond"
    assert spec["volumes"][0]["hostPath"]["path"].rstrip("/") == mount["mountPath"]


def test_the_node_part_lives_in_its_own_privileged_namespace() -> None:
    """By default the chart makes `<release namespace>-node` for the DaemonSet, labelled for Pod
    Security `privileged`, so the release namespace (webhook, CA key) need not allow it."""
    for values, sets, namespace in [
        (HELPER, (), NODE_NAMESPACE),
        (HELPER, ("cniInstaller.namespace=bond-nodes",), "bond-nodes"),
    ]:
        objects = render(values, sets=sets)
        node = {
            (r.kind, r.obj["metadata"].get("namespace", r.name))
            for r in objects
            if r.obj["metadata"]["labels"]["app.kubernetes.io/component"] == "cni-installer"
        }
        assert node == {
            ("DaemonSet", namespace),
            ("ServiceAccount", namespace),
            ("Namespace", namespace),
        }
        labels = one(objects, "Namespace")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
        # The webhook, its certificates and their RBAC stay in the release namespace.
        elsewhere = {
            r.obj["metadata"].get("namespace")
            for r in objects
            if r.kind not in CLUSTER_SCOPED and r.obj["metadata"]["namespace"] != namespace
        }
        assert elsewhere == {NAMESPACE}
    # An existing namespace, or the release's own (the old layout): the chart makes none.
    for sets in [("cniInstaller.createNamespace=false",), (f"cniInstaller.namespace={NAMESPACE}",)]:
        objects = render(sets=sets)
        assert "Namespace" not in kinds(objects), sets
    same = render(sets=(f"cniInstaller.namespace={NAMESPACE}",))
    assert one(same, "DaemonSet")["metadata"]["namespace"] == NAMESPACE


def _profiles(objects: list[Rendered]) -> str:
    text: str = one(objects, "ConfigMap", "-profiles")["data"]["profiles.yaml"]
    return text


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *CI_IDS])
def test_the_profiles_configmap_loads_in_the_webhook(values: Path | None) -> None:
    objects = render(*([values] if values else []))
    profiles = parse_profiles(_profiles(objects), "chart ConfigMap")
    default = profiles.get("default")
    assert default is not None
    assert default.bond.interface == "bond0"
    # Qualified names: pods of every namespace find the NADs.
    assert all(a.namespace for a in default.attachments)


def test_the_nads_match_the_default_profile(default: list[Rendered]) -> None:
    profile = parse_profiles(_profiles(default)).get("default")
    assert profile is not None
    nads = {r.name: r.obj for r in default if r.kind == "NetworkAttachmentDefinition"}
    assert set(nads) == {"sriov-pf-a", "sriov-pf-b", "bond-net"}
    for leg, pool in zip(
        profile.legs, ("intel.com/sriov_pf_a", "intel.com/sriov_pf_b"), strict=True
    ):
        assert leg.namespace == NAMESPACE
        nad = nads[leg.name]
        assert nad["metadata"]["annotations"] == {"k8s.v1.cni.cncf.io/resourceName": pool}
        config = json.loads(nad["spec"]["config"])
        assert config["type"] == "sriov"
        assert "ipam" not in config
        assert config["link_state"] == "auto"
    bond_nad = nads[profile.bond.name]
    check = check_bond_config(
        f"{NAMESPACE}/{profile.bond.name}",
        bond_nad["spec"]["config"],
        [leg.interface for leg in profile.legs],
    )
    assert check.problem is None
    assert check.warnings == ()


def test_no_nads_value_set_points_the_profile_at_existing_nads() -> None:
    objects = render(CHART / "ci" / "no-nads-values.yaml")
    assert "NetworkAttachmentDefinition" not in kinds(objects)
    profile = parse_profiles(_profiles(objects)).get("default")
    assert profile is not None
    assert [a.describe() for a in profile.attachments] == [
        "sriov/ens1f0-vfs@net1",
        "sriov/ens2f0-vfs@net2",
        "sriov/ha-bond@bond0",
    ]


def test_extra_profiles_sit_beside_the_default() -> None:
    objects = render(CHART / "ci" / "profiles-values.yaml")
    profiles = parse_profiles(_profiles(objects))
    assert sorted(profiles.profiles) == ["default", "storage"]
    bond = one(objects, "NetworkAttachmentDefinition", "bond-net")
    config = json.loads(bond["spec"]["config"])
    assert config["ipam"] == {"type": "host-local", "subnet": "10.56.217.0/24"}
    assert config["links"] == [{"name": "net1"}, {"name": "net2"}]
    assert (config["mode"], config["mtu"], config["miimon"]) == ("balance-xor", 9000, "50")


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        (("webhook.bogus=1",), ("webhook", "bogus")),
        (("bogus=1",), ("bogus",)),
        (("webhook.failurePolicy=Maybe",), ("failurePolicy", "Fail", "Ignore")),
        (("webhook.url=http://127.0.0.1/mutate",), ("webhook", "url")),
        (("webhook.timeoutSeconds=60",), ("webhook", "timeoutSeconds")),
        (("certificates.mode=vault",), ("certificates", "mode")),
        (("networks.legs.pfA.interface=this-is-too-long",), ("pfA", "interface")),
        (("cniInstaller.helper.socket=/run/b.sock",), ("helper", "socket")),
        (("cniInstaller.helper.bogus=1",), ("helper", "bogus")),
        (("cniInstaller.namespace=Bad_Name",), ("cniInstaller", "namespace")),
        (("cniInstaller.helper.extraHostPaths.x.path=relative",), ("extraHostPaths", "path")),
        (("webhook.networkPolicy.apiserverCIDRs={10.0.0.1}",), ("apiserverCIDRs",)),
        (("webhook.priorityClass.value=2000000000",), ("priorityClass", "value")),
        (("webhook.headerTimeoutSeconds=0",), ("webhook", "headerTimeoutSeconds")),
        (("webhook.limitConcurrency=0",), ("webhook", "limitConcurrency")),
        (("webhook.clientAuth.bogus=1",), ("clientAuth", "bogus")),
    ],
)
def test_the_schema_refuses_with_a_clear_error(
    sets: tuple[str, ...], names: tuple[str, ...]
) -> None:
    """Guards values.schema.json: a bad value is refused before anything renders, and the error
    names the key (and what is allowed), our schema's names; the sentence around them is helm's
    and its schema library's, which change with helm."""
    result = helm(*template_args(sets=sets), check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr  # the schema's refusal, not a template's `fail`
    for name in names:
        assert name in result.stderr, (name, result.stderr)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("webhook.url=https://127.0.0.1:9443/mutate",),
            "webhook.url is set, so the webhook runs outside the cluster: set "
            "certificates.mode=external",
        ),
        (
            ("certificates.mode=external",),
            "certificates.mode=external needs certificates.external.caBundle",
        ),
        (
            ("networks.legs.pfB.interface=net1",),
            'networks.legs.pfB.interface "net1" is used twice',
        ),
        (("defaultProfile.enabled=false",), "no bond profile"),
    ],
)
def test_inconsistent_values_fail_with_the_fix(sets: tuple[str, ...], message: str) -> None:
    result = helm(*template_args(sets=sets), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_every_value_is_documented() -> None:
    """helm-docs style: every key has a `# --` comment block right above it, unless it is a parent
    whose children are documented, or sits inside a documented value (e.g. `resources`)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$")
    undocumented = []
    documented_at: list[int] = []  # indents of the enclosing documented keys
    for i, line in enumerate(lines):
        m = key.match(line)
        if not m:
            continue
        indent, name, rest = len(m.group(1)), m.group(2), m.group(3)
        documented_at = [d for d in documented_at if d < indent]
        if documented_at:
            continue
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        if j >= 0 and lines[j].lstrip().startswith("# --"):
            documented_at.append(indent)
            continue
        nxt = next((x for x in lines[i + 1 :] if x.strip() and not x.lstrip().startswith("#")), "")
        if rest.strip() == "" and len(nxt) - len(nxt.lstrip()) > indent:
            continue  # a parent: its children carry the docs
        undocumented.append(name)
    assert undocumented == []


def test_the_schema_knows_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("additionalProperties") is False:
            unknown = set(value) - set(node["properties"])
            assert not unknown, f"{path}: {unknown} missing from values.schema.json"
        for k, v in (value or {}).items():
            sub = node.get("properties", {}).get(k)
            if isinstance(sub, dict) and sub.get("type") == "object" and isinstance(v, dict):
                walk(sub, v, f"{path}.{k}")

    walk(schema, values, "")


def test_the_certificate_jobs_may_change_only_the_ca_bundle(default: list[Rendered]) -> None:
    """RBAC limits them to this release's configuration; a policy (its rules tried against the
    real apiserver in test_chart_cluster.py) to its caBundle. Both certgen identities, bound to
    that configuration alone; no certgen, no policy."""
    policy = one(default, "ValidatingAdmissionPolicy", "-certgen")
    binding = one(default, "ValidatingAdmissionPolicyBinding", "-certgen")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    (rule,) = binding["spec"]["matchResources"]["resourceRules"]
    assert rule["resourceNames"] == [FULLNAME]
    assert rule["resources"] == ["mutatingwebhookconfigurations"]
    (condition,) = policy["spec"]["matchConditions"]
    for suffix in ("-certgen", "-certgen-hook"):
        account = one(default, "ServiceAccount", suffix)["metadata"]
        assert f"'system:serviceaccount:{NAMESPACE}:{account['name']}'" in condition["expression"]
    for sets in [("certificates.mode=certManager",), ("certificates.builtin.renewCronJob=false",)]:
        objects = render(sets=sets)
        policies = [
            r for r in objects if r.kind == "ValidatingAdmissionPolicy" and "certgen" in r.name
        ]
        assert len(policies) == (1 if "renewCronJob=false" in sets[0] else 0), sets


def test_the_networks_of_selected_pods_are_fixed_after_admission(default: list[Rendered]) -> None:
    """On the pods the webhook selects (the same objectSelector), for pods and their
    subresources; the rules run against the real apiserver in test_chart_cluster.py."""
    policy = one(default, "ValidatingAdmissionPolicy", "-networks")
    hook = one(default, "MutatingWebhookConfiguration")["webhooks"][0]
    assert policy["spec"]["matchConstraints"]["objectSelector"] == hook["objectSelector"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["operations"], rule["resources"]) == (["UPDATE"], ["pods", "pods/*"])
    binding = one(default, "ValidatingAdmissionPolicyBinding", "-networks")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    off = render(sets=("webhook.immutableNetworks=false",))
    assert not [r for r in off if "networks" in r.name and "Policy" in r.kind]
