"""The JSON types of the Pod fields the mutation reads, checked before it reads them.

The API server sends only Pods it could decode, but /mutate takes any JSON: a field of the wrong
type is a denial that names the field, never an exception inside the rule book.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_META_STRINGS = ("name", "generateName", "namespace")
_INDEX = re.compile(r"\[[^\]]*\]")


class ShapeError(ValueError):
    """`field` (a path such as spec.containers[0].resources) has the wrong JSON type."""

    def __init__(self, field: str, expected: str, value: object) -> None:
        super().__init__(f"{field} must be {expected}, not {json_type(value)}")
        self.field = field

    @property
    def explain(self) -> str:
        """The `kubectl explain` path of the field (no list indices or map keys)."""
        return "pod." + _INDEX.sub("", self.field)


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a map"
    return type(value).__name__


def metadata(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Pod's metadata ({} when absent or null), checked to be a map."""
    meta = pod.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise ShapeError("metadata", "a map", meta)
    return meta


def labels(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """metadata.labels ({} when absent or null), checked to be a map: the webhook's scope."""
    return _optional_map(meta, "labels", "metadata.labels")


def check_rest(pod: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Everything else the mutation reads: names, annotations, containers and their resources."""
    for key in _META_STRINGS:
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise ShapeError(f"metadata.{key}", "a string", value)
    for key, value in _optional_map(meta, "annotations", "metadata.annotations").items():
        if not isinstance(value, str):
            raise ShapeError(f"metadata.annotations[{key}]", "a string", value)
    spec = _optional_map(pod, "spec", "spec")
    containers = spec.get("containers")
    if containers is None:
        return
    if not isinstance(containers, list):
        raise ShapeError("spec.containers", "a list of containers", containers)
    for index, container in enumerate(containers):
        where = f"spec.containers[{index}]"
        if not isinstance(container, Mapping):
            raise ShapeError(where, "a container (a map)", container)
        name = container.get("name")
        if name is not None and not isinstance(name, str):
            raise ShapeError(f"{where}.name", "a string", name)
        resources = _optional_map(container, "resources", f"{where}.resources")
        for section in ("requests", "limits"):
            _optional_map(resources, section, f"{where}.resources.{section}")


def _optional_map(parent: Mapping[str, Any], key: str, field: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ShapeError(field, "a map", value)
    return value
