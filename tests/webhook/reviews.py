"""AdmissionReview builders for the HTTP tests."""

from __future__ import annotations

import base64
import json
from typing import Any


def review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "0b1e8c3a-1111-4222-8333-944455556666",
    operation: str = "CREATE",
    namespace: str = "default",
    dry_run: bool = False,
    kind: str = "Pod",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "requestKind": {"group": "", "version": "v1", "kind": kind},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "dryRun": dry_run,
    }
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response.get("patchType") == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops
