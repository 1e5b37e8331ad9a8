"""NetworkAttachmentDefinitions as the mutation sees them, and the file-backed source."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

RESOURCE_NAME_ANNOTATION = "k8s.v1.cni.cncf.io/resourceName"
NAD_KIND = "NetworkAttachmentDefinition"
# The API server's rules for a namespace (a DNS-1123 label) and an object name (a subdomain).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")


class NadError(ValueError):
    """A NAD document cannot be used."""


class NadFetchError(RuntimeError):
    """The API server could not be asked (the request is answered as an error, not a denial)."""


def could_exist(namespace: str, name: str) -> bool:
    """Whether the API server could hold a NAD by this name (else there is nothing to ask for)."""
    return bool(_NAMESPACE.fullmatch(namespace) and len(name) <= 253 and _SUBDOMAIN.fullmatch(name))


@dataclass(frozen=True)
class NetworkAttachmentDefinition:
    namespace: str
    name: str
    resource_name: str | None
    config: str
    resource_version: str = ""
    # spec.config decoded once when the NAD is stored, not on every admission.
    config_json: Any = field(init=False, repr=False, compare=False)
    config_error: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            decoded, error = (json.loads(self.config) if self.config else None), None
        except json.JSONDecodeError as exc:
            decoded, error = None, exc.msg
        object.__setattr__(self, "config_json", decoded)
        object.__setattr__(self, "config_error", error)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @classmethod
    def from_object(
        cls, obj: Mapping[str, Any], default_namespace: str = "default"
    ) -> NetworkAttachmentDefinition:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise NadError("a NetworkAttachmentDefinition has no metadata.name")
        annotations = meta.get("annotations") or {}
        resource = annotations.get(RESOURCE_NAME_ANNOTATION)
        spec = obj.get("spec") or {}
        config = spec.get("config", "")
        return cls(
            namespace=str(meta.get("namespace") or default_namespace),
            name=name,
            resource_name=str(resource).strip() or None if resource else None,  # "" means none
            config=config if isinstance(config, str) else "",
            resource_version=str(meta.get("resourceVersion") or ""),
        )


class NadSource(Protocol):
    """Where the webhook finds NADs.

    `cached` never does I/O (the hot path); `fetch` may ask the API server (NadFetchError when it
    cannot) and is called only for the keys `cached` did not know, several at once from worker
    threads; `synced` says the source has its initial state (readiness).
    """

    @property
    def synced(self) -> bool: ...

    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None: ...

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None: ...

    def __len__(self) -> int: ...


class StaticNadSource:
    """A fixed set of NADs: the file source for preview and local serving, and the test double."""

    def __init__(self, nads: Iterable[NetworkAttachmentDefinition]) -> None:
        self._nads = {nad.key: nad for nad in nads}

    @property
    def synced(self) -> bool:
        return True

    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        return self._nads.get((namespace, name))

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        return self._nads.get((namespace, name))

    def __len__(self) -> int:
        return len(self._nads)


def load_nad_file(path: Path, default_namespace: str = "default") -> StaticNadSource:
    """NADs from a multi-document YAML file or a `kind: List` (other kinds are skipped)."""
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise NadError(f"{path}: not valid YAML: {exc}") from None
    nads: list[NetworkAttachmentDefinition] = []
    for doc in docs:
        for obj in _flatten(doc):
            if obj.get("kind") == NAD_KIND:
                try:
                    nads.append(NetworkAttachmentDefinition.from_object(obj, default_namespace))
                except NadError as exc:
                    raise NadError(f"{path}: {exc}") from None
    return StaticNadSource(nads)


def _flatten(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
        return [item for item in doc.get("items") or [] if isinstance(item, dict)]
    return [doc]
