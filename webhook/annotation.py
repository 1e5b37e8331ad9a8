"""The Multus networks annotation: parse both forms, check names, serialise the JSON form."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from cni.core.ifname import ifname_problem

NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"

# Multus' check for the short form: DNS-1123-like units, case-insensitive.
_SHORT_UNIT = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


class AnnotationError(ValueError):
    """The networks annotation cannot be parsed the way Multus would."""


@dataclass(frozen=True)
class NetworkSelection:
    """One attachment in the networks annotation.

    `raw` keeps every field the user wrote (mac, ips, cni-args, ...) so that serialising a parsed
    entry gives it back unchanged.
    """

    name: str
    namespace: str | None = None
    interface: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def key(self, default_namespace: str) -> tuple[str, str]:
        return (self.namespace or default_namespace, self.name)

    def to_json_object(self) -> dict[str, Any]:
        if self.raw:
            return dict(self.raw)
        obj: dict[str, Any] = {"name": self.name}
        if self.namespace is not None:
            obj["namespace"] = self.namespace
        if self.interface is not None:
            obj["interface"] = self.interface
        return obj

    def describe(self) -> str:
        text = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{text}@{self.interface}" if self.interface else text


def check_interface_name(name: str) -> str | None:
    """Why `name` is not a usable interface name, or None: the bond CNI's own rule (which is the
    kernel's), so a pod admitted here is not refused on the node."""
    return ifname_problem(name)


def parse_networks(value: str) -> list[NetworkSelection]:
    """Parse the annotation value in the short or JSON form, as Multus does."""
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        return _parse_json(text)
    return [_parse_short(item) for item in text.split(",")]


def serialise_networks(selections: list[NetworkSelection]) -> str:
    """The JSON form, compact, as Multus and the apiserver store it."""
    return orjson.dumps([s.to_json_object() for s in selections]).decode()


def _parse_short(item: str) -> NetworkSelection:
    item = item.strip()
    slash = item.split("/")
    if len(slash) > 2:
        raise AnnotationError(f"entry {item!r} has more than one '/'; use namespace/name@interface")
    namespace = slash[0].strip() if len(slash) == 2 else None
    rest = slash[-1]
    at = rest.split("@")
    if len(at) > 2:
        raise AnnotationError(f"entry {item!r} has more than one '@'; use namespace/name@interface")
    name = at[0].strip()
    interface = at[1].strip() if len(at) == 2 else None
    for unit in (namespace, name, interface):
        if unit and not _SHORT_UNIT.match(unit):
            raise AnnotationError(
                f"entry {item!r}: {unit!r} is not a valid name (letters, digits and '-', starting "
                "and ending with a letter or digit)"
            )
    if not name:
        raise AnnotationError(f"entry {item!r} has no network name")
    if namespace == "":
        raise AnnotationError(f"entry {item!r} has an empty namespace before '/'")
    if interface == "":
        raise AnnotationError(f"entry {item!r} has an empty interface after '@'")
    if interface is not None:
        _require_interface(item, interface)
    return NetworkSelection(name=name, namespace=namespace, interface=interface)


def _parse_json(text: str) -> list[NetworkSelection]:
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise AnnotationError("is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # numbers Go's encoding/json (Multus) refuses too
        raise AnnotationError(f"is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise AnnotationError("must be a JSON list of objects, not a single object; wrap it in [ ]")
    return [_from_json_object(index, obj) for index, obj in enumerate(data)]


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise ValueError(f"{digits[:20]} is out of range")
    return value


def _int64(digits: str) -> int:
    value = int(digits)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{digits[:20]}... does not fit in 64 bits")
    return value


# Built once: json.loads with hooks builds a decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_int64, parse_float=_finite)


def _from_json_object(index: int, obj: object) -> NetworkSelection:
    where = f"entry {index}"
    if not isinstance(obj, dict):
        raise AnnotationError(f"{where} must be an object with at least a 'name'")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError(f"{where} has no 'name'; every entry names a network")
    namespace = obj.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise AnnotationError(f"{where} ({name}): 'namespace' must be a non-empty string")
    interface = obj.get("interface")
    if interface is not None and not isinstance(interface, str):
        raise AnnotationError(f"{where} ({name}): 'interface' must be a string")
    if interface == "":
        interface = None  # Multus treats an empty interface as "pick one"
    if interface is not None:
        _require_interface(f"{where} ({name})", interface)
    return NetworkSelection(name=name, namespace=namespace, interface=interface, raw=obj)


def _require_interface(where: str, interface: str) -> None:
    problem = check_interface_name(interface)
    if problem is not None:
        raise AnnotationError(f"{where}: interface name {interface!r} {problem}")
