"""The cluster rig's own tests: a real control plane stores, schedules, and goes away cleanly."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import secrets
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from certs import pki
from tests.poll import poll
from tests.rigs.cluster import COMPONENTS, REPO, Cluster, pid_alive, port_open

pytestmark = pytest.mark.cluster


def _namespace(cluster: Cluster) -> str:
    name = f"rig-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    return name


def _pod(
    name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
    }


def test_server_reports_the_built_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")
    assert cluster.server.startswith("https://127.0.0.1:")
    assert cluster.ca_file.is_file()


def test_namespace_and_pod_round_trip(cluster: Cluster) -> None:
    ns = _namespace(cluster)
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_pod("p", {"bond": "true"})))
    pod = json.loads(cluster.kubectl("-n", ns, "get", "pod", "p", "-o", "json").stdout)
    assert pod["metadata"]["namespace"] == ns
    assert pod["metadata"]["labels"] == {"bond": "true"}
    # The ServiceAccount admission plugin is on: the pod got the default SA's token volume.
    assert pod["spec"]["serviceAccountName"] == "default"
    assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])


def test_network_attachment_definition_crd_is_served(cluster: Cluster) -> None:
    ns = _namespace(cluster)
    config = '{"cniVersion": "1.0.0", "type": "sriov"}'
    nad = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {
            "name": "sriov-a",
            "annotations": {"k8s.v1.cni.cncf.io/resourceName": "intel.com/pf_a"},
        },
        "spec": {"config": config},
    }
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(nad))
    got = json.loads(
        cluster.kubectl("-n", ns, "get", "net-attach-def", "sriov-a", "-o", "json").stdout
    )
    assert got["spec"]["config"] == config


def test_deployment_yields_scheduled_pods(cluster: Cluster) -> None:
    ns = _namespace(cluster)
    node = f"node-{ns}"
    cluster.add_node(node, labels={"rig": ns}, allocatable={"example.com/vf-pool-a": "2"})
    try:
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "nodeSelector": {"rig": ns},
                        "containers": [
                            {
                                "name": "main",
                                "image": "registry.k8s.io/pause:3.10",
                                # An extended resource, as the webhook adds for each VF pool.
                                "resources": {"limits": {"example.com/vf-pool-a": "1"}},
                            }
                        ],
                    },
                },
            },
        }
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment))

        def scheduled() -> bool:
            pods = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)
            nodes = [p["spec"].get("nodeName") for p in pods["items"]]
            return len(nodes) == 2 and all(n == node for n in nodes)

        poll(scheduled, timeout=60, what=f"2 pods of deployment {ns}/web scheduled to {node}")
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false")


def test_helm_installs_and_uninstalls_a_chart(cluster: Cluster, tmp_path: Path) -> None:
    ns = _namespace(cluster)
    chart = tmp_path / "trivial"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: trivial\nversion: 0.1.0\nkubeVersion: '>=1.34.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    cluster.helm("install", "rel", str(chart), "-n", ns, "--set", "greeting=hi", "--wait")
    data = json.loads(cluster.kubectl("-n", ns, "get", "cm", "rel-greeting", "-o", "json").stdout)
    assert data["data"] == {"greeting": "hi"}
    releases = json.loads(cluster.helm("list", "-n", ns, "-o", "json").stdout)
    assert [r["name"] for r in releases] == ["rel"]

    cluster.helm("uninstall", "rel", "-n", ns, "--wait")
    gone = cluster.kubectl("-n", ns, "get", "cm", "rel-greeting", check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    assert json.loads(cluster.helm("list", "-n", ns, "-o", "json").stdout) == []


class _Boom(Exception):
    pass


def test_teardown_leaves_no_process_or_port_even_when_the_body_raises(tmp_path: Path) -> None:
    second = Cluster(tmp_path / "second", die_with_parent=True)
    with pytest.raises(_Boom), second:
        assert set(second.pids) == set(COMPONENTS)
        pids = dict(second.pids)
        ports = dict(second.ports)
        assert all(port_open(port) for name, port in ports.items() if name != "etcd-peer")
        raise _Boom
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert [name for name, port in ports.items() if port_open(port)] == []
    assert not second.state_dir.exists()


def test_cli_up_and_down(tmp_path: Path) -> None:
    # Through a separate process, as `make cluster-up` runs it: the daemons outlive it.
    state = tmp_path / "cli"

    def cli(command: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "tests.rigs.cluster", command, "--dir", str(state)]
        return subprocess.run(args, capture_output=True, text=True, check=False, cwd=REPO)

    up = cli("up")
    assert up.returncode == 0, up.stderr
    started = Cluster.from_state(state)
    try:
        assert set(started.pids) == set(COMPONENTS)
        again = cli("up")
        assert again.returncode == 0, again.stderr
        assert "already up" in again.stdout
        version = started.kubectl("version", "-o", "json")
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"].startswith("v1.34.")
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    assert [pid for pid in started.pids.values() if pid_alive(pid)] == []
    assert [port for port in started.ports.values() if port_open(port)] == []
    assert not state.exists()


_HARD_KILLED_PARENT = """
import json, os, signal, sys
from pathlib import Path
from tests.rigs.cluster import Cluster

cluster = Cluster(Path(sys.argv[1]), die_with_parent=True)
cluster.start()
print(json.dumps({"pids": cluster.pids, "ports": cluster.ports}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no finalizer, no atexit: as a CI timeout would
"""


def test_a_hard_killed_parent_leaves_no_process_or_port(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _HARD_KILLED_PARENT, str(tmp_path / "orphan")],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert run.returncode == -9, run.stderr
    started = json.loads(run.stdout)
    assert set(started["pids"]) == set(COMPONENTS)
    poll(
        lambda: not any(pid_alive(pid) for pid in started["pids"].values()),
        timeout=30,
        what="the orphaned control plane to die with its parent",
    )
    assert [port for port in started["ports"].values() if port_open(port)] == []


def _loopback_webhook_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving pair for 127.0.0.1: (CA cert, serving cert, serving key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.generate_ca("rig-webhook-ca", now, datetime.timedelta(hours=1))
    serving = pki.generate_serving(ca, [], ["127.0.0.1"], now, datetime.timedelta(hours=1))
    paths = directory / "ca.crt", directory / "webhook.crt", directory / "webhook.key"
    for path, pem in zip(paths, (ca.cert_pem, serving.cert_pem, serving.key_pem), strict=True):
        path.write_bytes(pem)
    return paths


class _MutateHandler(http.server.BaseHTTPRequestHandler):
    """Answers every AdmissionReview with a patch that adds the annotation rig/webhook=seen."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        patch = [{"op": "add", "path": "/metadata/annotations/rig~1webhook", "value": "seen"}]
        body = json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": True,
                    "patchType": "JSONPatch",
                    "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


def test_apiserver_calls_a_webhook_on_loopback_url(cluster: Cluster, tmp_path: Path) -> None:
    ns = _namespace(cluster)
    ca, cert, key = _loopback_webhook_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MutateHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": f"rig-{ns}"},
        "webhooks": [
            {
                "name": "rig.bond-injector.test",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{server.server_address[1]}/mutate",
                    "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "objectSelector": {"matchLabels": {"rig-webhook": ns}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
            }
        ],
    }
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(webhook))
        # With an annotation already there, the patch's parent exists: nothing else to handle.
        pod = _pod("hooked", {"rig-webhook": ns}, {"k8s.v1.cni.cncf.io/networks": "sriov-a"})
        manifest = json.dumps(pod)
        created = cluster.kubectl("-n", ns, "create", "-o", "json", "-f", "-", input=manifest)
        annotations = json.loads(created.stdout)["metadata"]["annotations"]
        assert annotations["rig/webhook"] == "seen"
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", f"rig-{ns}", check=False)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
