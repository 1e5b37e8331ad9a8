"""The AdmissionReview v1 envelope: check a decoded review, build the responses.

Plain data in, plain data out; the HTTP edge (webhook/endpoint.py) owns bytes and status codes.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson

from webhook.patch import PatchOp

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


class ReviewError(ValueError):
    """The review is malformed; answered with HTTP 400 and this message."""


class Status(TypedDict, total=False):
    code: int
    reason: str
    message: str


class Response(TypedDict, total=False):
    uid: str
    allowed: bool
    status: Status
    patchType: str
    patch: str
    warnings: list[str]


@dataclass(frozen=True)
class Request:
    """The fields of `request` the webhook uses; `raw` keeps the rest."""

    uid: str
    operation: str
    kind: str
    resource: str
    sub_resource: str
    namespace: str
    name: str
    dry_run: bool
    object: Mapping[str, Any] | None

    @property
    def is_pod_create(self) -> bool:
        return (
            self.operation == "CREATE"
            and self.kind == "Pod"
            and self.resource == "pods"
            and not self.sub_resource
        )


def parse_review(review: object) -> Request:
    """The request of an AdmissionReview v1, or ReviewError naming what is wrong."""
    if not isinstance(review, dict):
        raise ReviewError("body must be an AdmissionReview object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise ReviewError(
            f"expected apiVersion {API_VERSION} kind {KIND}, got apiVersion "
            f"{review.get('apiVersion')!r} kind {review.get('kind')!r}; set "
            "admissionReviewVersions: [v1] in the webhook configuration"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing; the response must echo it")
    kind = _mapping(request.get("kind"))
    resource = _mapping(request.get("resource"))
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise ReviewError("request.object must be an object")
    return Request(
        uid=uid,
        operation=str(request.get("operation") or ""),
        kind=str(kind.get("kind") or ""),
        resource=str(resource.get("resource") or ""),
        sub_resource=str(request.get("subResource") or ""),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        dry_run=request.get("dryRun") is True,
        object=obj,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def allowed(uid: str, warnings: tuple[str, ...] | list[str] = ()) -> Response:
    response: Response = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return response


def patched(uid: str, patch: list[PatchOp], warnings: tuple[str, ...] | list[str] = ()) -> Response:
    response = allowed(uid, warnings)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode("ascii")
    return response


def denied(uid: str, message: str, warnings: tuple[str, ...] | list[str] = ()) -> Response:
    response: Response = {
        "uid": uid,
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": message},
    }
    if warnings:
        response["warnings"] = list(warnings)
    return response


def errored(uid: str, code: int, message: str) -> Response:
    return {"uid": uid, "allowed": False, "status": {"code": code, "message": message}}


def review(response: Response) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
