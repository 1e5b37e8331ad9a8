"""Bond profiles: YAML -> frozen dataclasses, validated, and a loader that follows file changes."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from webhook.annotation import check_interface_name

DEFAULT_PROFILE = "default"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LEG_KEYS = frozenset({"network", "interface"})
_PROFILE_KEYS = frozenset(
    {"legs", "bond", "requireDistinctPools", "readinessGate", "allowedNamespaces"}
)

log = logging.getLogger(__name__)


class ProfileError(ValueError):
    """The profiles file is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class Attachment:
    """One attachment a profile adds: a NAD (name, or namespace/name) on an interface."""

    name: str
    namespace: str | None
    interface: str

    def describe(self) -> str:
        prefix = f"{self.namespace}/" if self.namespace else ""
        return f"{prefix}{self.name}@{self.interface}"


@dataclass(frozen=True)
class BondProfile:
    name: str
    legs: tuple[Attachment, ...]
    bond: Attachment
    require_distinct_pools: bool = True
    readiness_gate: bool = False  # add the bond agent's BondHealthy condition as a readinessGate
    # Namespaces other than the pod's whose NADs a pod's own annotation entries may name. The
    # webhook reads NADs cluster-wide; without this a pod author could make it resolve (and
    # count the pools of) NADs in namespaces the author cannot read.
    allowed_namespaces: frozenset[str] = frozenset()

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return (*self.legs, self.bond)


@dataclass(frozen=True)
class Profiles:
    profiles: Mapping[str, BondProfile]

    def get(self, name: str) -> BondProfile | None:
        return self.profiles.get(name)


def parse_profiles(text: str, source: str = "profiles") -> Profiles:
    """Parse and validate the profiles YAML document."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise ProfileError(f"{source}: expected a mapping with a 'profiles' mapping at the top")
    extra = set(doc) - {"profiles"}
    if extra:
        raise ProfileError(f"{source}: unknown top-level keys {sorted(extra)}; only 'profiles'")
    if not doc["profiles"]:
        raise ProfileError(f"{source}: 'profiles' is empty; define at least '{DEFAULT_PROFILE}'")
    profiles = {
        str(name): _parse_profile(f"{source}: profiles.{name}", str(name), body)
        for name, body in doc["profiles"].items()
    }
    return Profiles(profiles=profiles)


def _parse_profile(where: str, name: str, body: Any) -> BondProfile:
    if not isinstance(body, dict):
        raise ProfileError(f"{where}: expected a mapping with 'legs' and 'bond'")
    unknown = set(body) - _PROFILE_KEYS
    if unknown:
        raise ProfileError(
            f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_PROFILE_KEYS)}"
        )
    legs_raw = body.get("legs")
    if not isinstance(legs_raw, list) or len(legs_raw) < 2:
        raise ProfileError(f"{where}.legs: a bond needs a list of two or more legs")
    legs = tuple(_parse_attachment(f"{where}.legs[{i}]", leg) for i, leg in enumerate(legs_raw))
    if "bond" not in body:
        raise ProfileError(f"{where}.bond: missing; name the bond NAD and its interface")
    bond = _parse_attachment(f"{where}.bond", body["bond"])
    distinct = body.get("requireDistinctPools", True)
    if not isinstance(distinct, bool):
        raise ProfileError(f"{where}.requireDistinctPools: must be true or false")
    gate = body.get("readinessGate", False)
    if not isinstance(gate, bool):
        raise ProfileError(f"{where}.readinessGate: must be true or false")
    allowed = _parse_namespaces(f"{where}.allowedNamespaces", body.get("allowedNamespaces", []))
    seen: set[str] = set()
    for att in (*legs, bond):
        if att.interface in seen:
            raise ProfileError(
                f"{where}: interface {att.interface!r} is used twice; each attachment needs its own"
            )
        seen.add(att.interface)
    return BondProfile(
        name=name,
        legs=legs,
        bond=bond,
        require_distinct_pools=distinct,
        readiness_gate=gate,
        allowed_namespaces=allowed,
    )


def _parse_namespaces(where: str, raw: Any) -> frozenset[str]:
    if not isinstance(raw, list):
        raise ProfileError(f"{where}: expected a list of namespace names, e.g. [shared-networks]")
    for index, namespace in enumerate(raw):
        if not isinstance(namespace, str) or not _DNS1123.match(namespace) or len(namespace) > 63:
            raise ProfileError(
                f"{where}[{index}]: {namespace!r} is not a namespace name "
                "(lower-case letters, digits and '-', at most 63)"
            )
    return frozenset(raw)


def _parse_attachment(where: str, raw: Any) -> Attachment:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected {{network: NAME, interface: IFNAME}}")
    unknown = set(raw) - _LEG_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_LEG_KEYS)}")
    network, interface = raw.get("network"), raw.get("interface")
    if not isinstance(network, str) or not network:
        raise ProfileError(f"{where}.network: missing; give a NAD name or namespace/name")
    parts = network.split("/")
    if len(parts) > 2 or not all(_DNS1123.match(p) for p in parts):
        raise ProfileError(
            f"{where}.network: {network!r} is not a NAD name or namespace/name "
            "(lower-case letters, digits and '-')"
        )
    if not isinstance(interface, str):
        raise ProfileError(f"{where}.interface: missing; give the interface name in the pod")
    problem = check_interface_name(interface)
    if problem is not None:
        raise ProfileError(f"{where}.interface: {interface!r} {problem}")
    namespace = parts[0] if len(parts) == 2 else None
    return Attachment(name=parts[-1], namespace=namespace, interface=interface)


class ProfileStore:
    """The profiles file, reloaded when it changes.

    A ConfigMap volume swaps a `..data` symlink, so the resolved file's identity (device, inode,
    mtime, size) changes; one `stat` per access notices it. An invalid new file is logged and the
    last good profiles stay in use.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._signature: tuple[int, int, int, int] | None = None
        self._profiles = self._load()  # a bad file at start is fatal: raise
        self.last_error: str | None = None
        self.reloads = 0

    @property
    def path(self) -> Path:
        return self._path

    def current(self) -> Profiles:
        try:
            signature = _signature(self._path)
        except OSError as exc:
            self.last_error = f"{self._path}: {exc.strerror}"
            return self._profiles
        if signature != self._signature:
            try:
                self._profiles = self._load()
                self.last_error = None
                self.reloads += 1
                log.info("reloaded profiles from %s", self._path)
            except (ProfileError, OSError) as exc:
                self._signature = signature  # do not re-parse the same bad file on every request
                self.last_error = str(exc)
                log.error("keeping the previous profiles: %s", exc)
        return self._profiles

    def _load(self) -> Profiles:
        signature = _signature(self._path)
        profiles = parse_profiles(self._path.read_text(encoding="utf-8"), str(self._path))
        self._signature = signature
        return profiles


def _signature(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
