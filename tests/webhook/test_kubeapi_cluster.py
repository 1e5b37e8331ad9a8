"""bond-injector's API client against the cluster rig's real kube-apiserver, with kubectl as the
independent client: the same kubeconfig must mean the same user, and what one writes the other
reads. A watch's 410 Gone is in test_nadcache_cluster.py (the NAD cache relists on it)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.poll import poll
from tests.rigs.cluster import Cluster
from webhook.kubeapi import ApiError, KubeClient, Resource, connect

pytestmark = pytest.mark.cluster

CONFIG_MAPS = Resource("", "v1", "configmaps")
PODS = Resource("", "v1", "pods")
SELF_REVIEWS = Resource("authentication.k8s.io", "v1", "selfsubjectreviews", namespaced=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"kubeapi-{secrets.token_hex(3)}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _whoami(api: KubeClient) -> str:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    return str(api.create(SELF_REVIEWS, review)["status"]["userInfo"]["username"])


def _kubectl_whoami(cluster: Cluster, kubeconfig: Path) -> str:
    out = subprocess.run(
        [str(cluster.binaries["kubectl"]), "--kubeconfig", str(kubeconfig), "auth", "whoami",
         "-o", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)["status"]["userInfo"]["username"])


def _rig_user(cluster: Cluster) -> dict[str, str]:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    return dict(config["users"][0]["user"])


def _kubeconfig(path: Path, server: str, user: dict[str, str], ca: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "rig",
        "clusters": [{"name": "rig", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "me", "user": user}],
        "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "me"}}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_client_certificate_files_relative_to_the_kubeconfig(
    cluster: Cluster, tmp_path: Path
) -> None:
    user = _rig_user(cluster)
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    (tmp_path / "pki" / "me.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
    (tmp_path / "pki" / "me.key").write_bytes(base64.b64decode(user["client-key-data"]))
    files = {"client-certificate": "pki/me.crt", "client-key": "pki/me.key"}
    path = _kubeconfig(tmp_path / "config", cluster.server, files, "pki/ca.crt")
    with connect(path) as api:
        assert _whoami(api) == _kubectl_whoami(cluster, path)
    with connect(cluster.kubeconfig) as api:  # the rig's own: everything embedded
        assert _whoami(api) == _kubectl_whoami(cluster, cluster.kubeconfig)


def test_a_token_file_is_read_again_so_a_rotated_token_is_used(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    tokens = {}
    for account in ("first", "second"):
        cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
        tokens[account] = cluster.kubectl("-n", namespace, "create", "token", account).stdout
    (tmp_path / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    (tmp_path / "token").write_text(tokens["first"])
    path = _kubeconfig(tmp_path / "config", cluster.server, {"tokenFile": "token"}, "ca.crt")
    with connect(path) as api:
        assert _whoami(api) == f"system:serviceaccount:{namespace}:first"
        assert _kubectl_whoami(cluster, path) == f"system:serviceaccount:{namespace}:first"
        (tmp_path / "token").write_text(tokens["second"])
        # The same client, on its kept-alive connection: the next request carries the new token.
        assert _whoami(api) == f"system:serviceaccount:{namespace}:second"


def test_errors_carry_the_status_and_the_api_servers_message(
    cluster: Cluster, api: KubeClient, namespace: str
) -> None:
    with pytest.raises(ApiError) as missing:
        api.get(CONFIG_MAPS, "nothing", namespace)
    assert missing.value.status == 404
    assert missing.value.message == 'configmaps "nothing" not found'
    assert str(missing.value) == (
        f"GET /api/v1/namespaces/{namespace}/configmaps/nothing: 404 Not Found: "
        'configmaps "nothing" not found'
    )

    created = api.create(CONFIG_MAPS, {"metadata": {"name": "cm"}, "data": {"a": "1"}}, namespace)
    stale = created["metadata"]["resourceVersion"]
    cluster.kubectl("-n", namespace, "patch", "configmap", "cm", "-p", '{"data":{"a":"2"}}')
    body = {"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"a": "3"}}
    with pytest.raises(ApiError) as conflict:
        api.replace(CONFIG_MAPS, "cm", body, namespace)
    assert conflict.value.status == 409
    assert "the object has been modified" in conflict.value.message

    with pytest.raises(ApiError) as invalid:
        api.create(CONFIG_MAPS, {"metadata": {"name": "Not_A_Name"}}, namespace)
    assert invalid.value.status == 422
    assert 'ConfigMap "Not_A_Name" is invalid' in invalid.value.message


def _kubectl_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def test_the_three_patch_types(cluster: Cluster, api: KubeClient, namespace: str) -> None:
    api.create(CONFIG_MAPS, {"metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}, namespace)
    api.patch(CONFIG_MAPS, "cm", {"data": {"a": None, "c": "3"}}, namespace)  # merge: null deletes
    ops = [
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "4"},
    ]
    api.patch(CONFIG_MAPS, "cm", ops, namespace, patch_type="json")
    assert _kubectl_json(cluster, "-n", namespace, "get", "configmap", "cm")["data"] == {
        "b": "4",
        "c": "3",
    }
    with pytest.raises(ApiError) as failed_test:
        api.patch(CONFIG_MAPS, "cm", ops, namespace, patch_type="json")  # /data/b is 4 now
    assert failed_test.value.status == 422

    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
    }
    api.create(PODS, pod, namespace)
    # Strategic merge: containers merge by name, so only b's image changes.
    patch = {"spec": {"containers": [{"name": "b", "image": "z"}]}}
    api.patch(PODS, "p", patch, namespace, patch_type="strategic")
    stored = _kubectl_json(cluster, "-n", namespace, "get", "pod", "p")
    assert [(c["name"], c["image"]) for c in stored["spec"]["containers"]] == [
        ("a", "x"),
        ("b", "z"),
    ]


def test_list_then_watch_from_its_version(
    cluster: Cluster, api: KubeClient, namespace: str
) -> None:
    cluster.kubectl("-n", namespace, "create", "configmap", "before")
    listing = api.list(CONFIG_MAPS, namespace, field_selector="metadata.name!=kube-root-ca.crt")
    assert [i["metadata"]["name"] for i in listing["items"]] == ["before"]
    watch = api.watch(
        CONFIG_MAPS, namespace, resource_version=listing["metadata"]["resourceVersion"],
        timeout_seconds=60,
    )  # fmt: skip
    seen: list[tuple[str, str]] = []

    def read() -> None:
        for event in watch:
            if event["type"] != "BOOKMARK":
                seen.append((event["type"], event["object"]["metadata"]["name"]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cluster.kubectl("-n", namespace, "create", "configmap", "after")
    cluster.kubectl("-n", namespace, "label", "configmap", "after", "x=y")
    cluster.kubectl("-n", namespace, "delete", "configmap", "before")
    want = [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    poll(lambda: seen == want or None, 30, f"the watch to deliver {want} (has {seen})")
    watch.close()  # from this thread, while the reader waits for the next event
    reader.join(10)
    assert not reader.is_alive()


def test_requests_from_many_threads_at_once(api: KubeClient, namespace: str) -> None:
    for i in range(8):
        api.create(CONFIG_MAPS, {"metadata": {"name": f"cm{i}"}, "data": {"i": str(i)}}, namespace)
    barrier = threading.Barrier(8)
    got: dict[int, str] = {}

    def read(i: int) -> None:
        barrier.wait(30)
        got[i] = api.get(CONFIG_MAPS, f"cm{i}", namespace)["data"]["i"]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == {i: str(i) for i in range(8)}
