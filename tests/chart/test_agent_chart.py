"""The bond health agent in the chart: its container, its privileges, its RBAC, its metrics."""

from __future__ import annotations

from typing import Any

from tests.chart.render import CHART, one, render

AGENT = CHART / "ci" / "agent-values.yaml"


def _pod(*sets: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(render(AGENT, sets=sets), "DaemonSet")["spec"]["template"]["spec"]
    return spec


def _container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    return dict(found)


def test_the_agent_runs_the_installed_bundle_with_sys_admin_only() -> None:
    spec = _pod()
    assert [c["name"] for c in spec["initContainers"]] == ["install"]
    assert [c["name"] for c in spec["containers"]] == ["helper", "agent"]
    agent = _container(spec, "agent")
    assert agent["command"][:4] == [
        "/opt/cni/bin/bond",
        "agent",
        "--records",
        "/var/lib/bond-cni/attachments",
    ]
    assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert agent["ports"] == [{"name": "metrics", "containerPort": 9153, "protocol": "TCP"}]
    assert agent["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert mounts["records"]["mountPath"] == "/var/lib/bond-cni"
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"
    assert mounts["agent-token"]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"


def test_a_slow_first_start_of_the_agent_is_waited_for_not_killed() -> None:
    """Its liveness probe starts only once the startup probe passed: within startupSeconds."""
    for sets, threshold in [((), 30), (("cniInstaller.agent.startupSeconds=900",), 450)]:
        agent = _container(_pod(*sets), "agent")
        startup = agent["startupProbe"]
        assert startup["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert startup["periodSeconds"] * startup["failureThreshold"] == threshold * 2
        assert "initialDelaySeconds" not in agent["livenessProbe"]


def test_only_the_agent_gets_an_api_token() -> None:
    spec = _pod()
    assert spec["automountServiceAccountToken"] is False
    for container in spec["initContainers"] + spec["containers"]:
        names = {m["name"] for m in container.get("volumeMounts", [])}
        assert ("agent-token" in names) == (container["name"] == "agent"), container["name"]


def test_the_plugin_under_the_helper_can_write_its_records() -> None:
    helper = _container(_pod(), "helper")
    mounts = {m["name"]: m for m in helper["volumeMounts"]}
    assert mounts["records"]["mountPath"] == "/var/lib/bond-cni"
    assert not mounts["records"].get("readOnly", False)
    for sets in [(), ("cniInstaller.agent.enabled=false",)]:
        volumes = {v["name"]: v for v in _pod(*sets)["volumes"]}
        assert volumes["records"]["hostPath"]["path"] == "/var/lib/bond-cni"


def test_the_agent_may_create_events_and_patch_pod_status_nothing_else() -> None:
    objects = render(AGENT)
    role = one(objects, "ClusterRole", "-agent")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    ]
    binding = one(objects, "ClusterRoleBinding", "-agent")
    (subject,) = binding["subjects"]
    assert subject["name"] == one(objects, "ServiceAccount", "-cni-installer")["metadata"]["name"]


def test_service_monitor_only_when_asked() -> None:
    assert not [
        r for r in render(AGENT) if r.kind in ("ServiceMonitor", "Service") and "agent" in r.name
    ]
    objects = render(AGENT, sets=("cniInstaller.agent.serviceMonitor.enabled=true",))
    monitor = one(objects, "ServiceMonitor", "-agent")
    service = one(objects, "Service", "-agent")
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_default_chart_has_no_agent() -> None:
    objects = render()
    assert not [r for r in objects if "agent" in r.name]
    spec = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["install"]


def test_readiness_gate_reaches_the_default_profile() -> None:
    config = one(render(AGENT), "ConfigMap", "-profiles")
    assert "readinessGate: true" in config["data"]["profiles.yaml"]


def test_the_apiserver_holds_the_agent_to_its_own_nodes_condition() -> None:
    """The rules themselves run against the real apiserver (tests/cni/test_agent_cluster.py);
    here: the policy is bound, and matches the DaemonSet's ServiceAccount and pods/status only."""
    objects = render(AGENT, sets=("cniInstaller.namespace=nodes",))
    policy = one(objects, "ValidatingAdmissionPolicy", "-agent")
    binding = one(objects, "ValidatingAdmissionPolicyBinding", "-agent")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["*"],
            "operations": ["UPDATE"],
            "resources": ["pods/status"],
        }
    ]
    account = one(objects, "ServiceAccount", "-cni-installer")["metadata"]
    (condition,) = policy["spec"]["matchConditions"]
    username = f"system:serviceaccount:{account['namespace']}:{account['name']}"
    assert condition["expression"] == f"request.userInfo.username == '{username}'"
    assert account["namespace"] == "nodes"
    assert not [
        r for r in render() if r.kind.startswith("ValidatingAdmissionPolicy") and "agent" in r.name
    ]


def test_the_containers_with_sys_admin_name_their_seccomp_and_optionally_apparmor() -> None:
    """seccomp RuntimeDefault on each, explicitly; AppArmor only when asked (naming one makes
    kubelet refuse the pod on nodes without AppArmor)."""
    for sets, apparmor in [
        ((), None),
        (("cniInstaller.appArmorProfile.type=RuntimeDefault",), {"type": "RuntimeDefault"}),
    ]:
        spec = _pod(*sets)
        for name in ("helper", "agent"):
            context = _container(spec, name)["securityContext"]
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert context.get("appArmorProfile") == apparmor, name
