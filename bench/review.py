"""The request both webhooks answer: the seed pod as the API server sends it, and the peer's config.

The API server defaults a Pod and the ServiceAccount admission plugin adds its token volume before
a mutating webhook sees it, so the body carries those fields too (their size matters for decoding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.mutation import BOND_LABEL, mutate
from webhook.nads import NAD_KIND, NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import Profiles, parse_profiles

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
NADS = EXAMPLES / "nads.yaml"
PROFILES = EXAMPLES / "profiles.yaml"
SEED_POD = EXAMPLES / "seed-pod.yaml"
NAMESPACE = "default"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


def seed_pod() -> dict[str, Any]:
    """examples/seed-pod.yaml with the defaults an API server of v1.34 fills in."""
    pod: dict[str, Any] = yaml.safe_load(SEED_POD.read_text(encoding="utf-8"))
    pod["metadata"].setdefault("namespace", NAMESPACE)
    for container in pod["spec"]["containers"]:
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault(
            "volumeMounts",
            [
                {
                    "name": "kube-api-access-bq7kx",
                    "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                }
            ],
        )
    spec = pod["spec"]
    spec.update(
        {
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready", "unreachable")
            ],
            "volumes": [{"name": "kube-api-access-bq7kx", "projected": _token_projection()}],
        }
    )
    pod["status"] = {}
    return pod


def _token_projection() -> dict[str, Any]:
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }


def admission_review(pod: dict[str, Any]) -> dict[str, Any]:
    kind = {"group": "", "version": "v1", "kind": "Pod"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b1e8c3a-1111-4222-8333-944455556666",
            "kind": kind,
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": kind,
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def nads() -> list[NetworkAttachmentDefinition]:
    docs = yaml.safe_load_all(NADS.read_text(encoding="utf-8"))
    return [
        NetworkAttachmentDefinition.from_object(doc, NAMESPACE)
        for doc in docs
        if isinstance(doc, dict) and doc.get("kind") == NAD_KIND
    ]


def profiles() -> Profiles:
    return parse_profiles(PROFILES.read_text(encoding="utf-8"), str(PROFILES))


def peer_config(pod: dict[str, Any]) -> dict[str, Any]:
    """The Go stand-in's config: inject the annotation our webhook writes, the NADs' pools."""
    decision = mutate(pod, NAMESPACE, profiles(), StaticNadSource(nads()).cached)
    if not decision.allowed or not decision.patch:
        raise RuntimeError(f"the seed pod is not mutated by examples/: {decision.message}")
    mutated = jsonpatch.apply_patch(pod, decision.patch)
    return {
        "label": BOND_LABEL,
        "annotation": mutated["metadata"]["annotations"][NETWORKS],
        "resources": {
            f"{nad.namespace}/{nad.name}": nad.resource_name for nad in nads() if nad.resource_name
        },
    }


def expected_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What both webhooks must turn the pod into (checked once before timing)."""
    decision = mutate(pod, NAMESPACE, profiles(), StaticNadSource(nads()).cached)
    result: dict[str, Any] = jsonpatch.apply_patch(pod, decision.patch)
    return result


def body(pod: dict[str, Any]) -> bytes:
    return json.dumps(admission_review(pod)).encode()
