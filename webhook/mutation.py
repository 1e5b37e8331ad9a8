"""The pure mutation: a Pod, its namespace, the profiles and a NAD lookup -> a decision."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import podshape
from webhook.annotation import (
    NETWORKS_ANNOTATION,
    AnnotationError,
    NetworkSelection,
    parse_networks,
    serialise_networks,
)
from webhook.bondconfig import check_bond_nad
from webhook.nads import RESOURCE_NAME_ANNOTATION, NetworkAttachmentDefinition
from webhook.patch import PatchOp, diff_mapping, pointer
from webhook.profiles import DEFAULT_PROFILE, Attachment, BondProfile, Profiles
from webhook.resources import QuantityError, merged_resources

BOND_LABEL = "bond"
PROFILE_ANNOTATION = "bond-injector.io/profile"
CONTAINER_ANNOTATION = "bond-injector.io/container"
# The condition the node's bond agent keeps on the pod (cni.agent.health.CONDITION).
BOND_HEALTHY = "bond-injector.io/BondHealthy"

NadLookup = Callable[[str, str], NetworkAttachmentDefinition | None]


@dataclass(frozen=True)
class Decision:
    """`allowed` with a (possibly empty) patch, or a denial `message`; `warnings` either way."""

    allowed: bool
    patch: list[PatchOp] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    message: str = ""
    in_scope: bool = True

    @property
    def outcome(self) -> str:
        if not self.in_scope:
            return "skipped"
        if not self.allowed:
            return "denied"
        return "patched" if self.patch else "unchanged"


class _Denied(Exception):
    pass


def mutate(
    pod: Mapping[str, Any], namespace: str | None, profiles: Profiles, lookup: NadLookup
) -> Decision:
    """Decide what to do with a Pod being created; a bad Pod is a denial, never an exception."""
    return prepare(pod, namespace, profiles).decide(lookup)


def needed_nads(
    pod: Mapping[str, Any], namespace: str | None, profiles: Profiles
) -> list[tuple[str, str]]:
    """Every NAD (namespace, name) `mutate` may look up for this Pod, each once.

    The legs and bond of the pod's profile, then the NADs its own networks annotation names; none
    when the decision needs no NAD (not labelled, a wrong shape, an unknown profile). So a caller
    can fetch every cache miss at once, before its one call to `mutate`.
    """
    return prepare(pod, namespace, profiles).needed()


class Prepared:
    """`mutate` in two steps, for a caller that fetches NADs in between (the endpoint): the
    checks that need no NAD are done once, and `decide` is exactly `mutate`'s answer."""

    def __init__(self, early: Decision | None, mutation: _Mutation | None) -> None:
        self._early = early
        self._mutation = mutation

    def needed(self) -> list[tuple[str, str]]:
        return [] if self._mutation is None else self._mutation.needed()

    def decide(self, lookup: NadLookup) -> Decision:
        if self._mutation is None:
            assert self._early is not None
            return self._early
        try:
            return self._mutation.run(lookup)
        except _Denied as denial:
            return Decision(allowed=False, message=str(denial))


def prepare(pod: Mapping[str, Any], namespace: str | None, profiles: Profiles) -> Prepared:
    """The mutation ready to run, or the decision reached without any NAD."""
    try:
        meta = podshape.metadata(pod)
        if podshape.labels(meta).get(BOND_LABEL) != "true":
            skip = Decision(allowed=True, in_scope=False, message="not labelled bond=true")
            return Prepared(skip, None)
        podshape.check_rest(pod, meta)
    except podshape.ShapeError as exc:
        message = (
            f"{_ref(pod, namespace)}: {exc}; `kubectl explain {exc.explain}` shows the shape a "
            "Pod has there"
        )
        return Prepared(Decision(allowed=False, message=message), None)
    ns = namespace or meta.get("namespace") or "default"
    try:
        return Prepared(None, _Mutation(pod, meta, ns, _ref(pod, namespace), profiles))
    except _Denied as denial:
        return Prepared(Decision(allowed=False, message=str(denial)), None)


def _ref(pod: Mapping[str, Any], namespace: str | None) -> str:
    """`pod namespace/name` for messages; `?` for a part that is missing or not a string."""
    meta = pod.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    ns = namespace or meta.get("namespace") or "default"
    name = meta.get("name")
    generate = meta.get("generateName")
    if not isinstance(name, str) or not name:
        name = f"{generate}*" if isinstance(generate, str) and generate else "?"
    return f"pod {ns if isinstance(ns, str) else '?'}/{name}"


class _Mutation:
    def __init__(
        self,
        pod: Mapping[str, Any],
        meta: Mapping[str, Any],
        namespace: str,
        ref: str,
        profiles: Profiles,
    ) -> None:
        self.pod = pod
        self.meta = meta
        self.ns = namespace
        self.annotations: Mapping[str, str] = meta.get("annotations") or {}
        self.ref = ref
        self.profile = self._profile(profiles)
        self.warnings: list[str] = []
        self.lookup: NadLookup = _no_nads
        self._parsed: list[NetworkSelection] | None = None

    def needed(self) -> list[tuple[str, str]]:
        keys = [(att.namespace or self.ns, att.name) for att in self.profile.attachments]
        with contextlib.suppress(_Denied):  # a bad annotation is denied before any lookup
            keys += [entry.key(self.ns) for entry in self._entries() if not self._foreign(entry)]
        return list(dict.fromkeys(keys))

    def run(self, lookup: NadLookup) -> Decision:
        self.lookup = lookup
        self.warnings = []
        index, container = self._container()
        entries = self._entries()
        final, added = self._merge(entries)
        self._check_namespaces(entries)
        self._check_legs()
        self._check_bond()
        counts = self._counts(final)
        patch: list[PatchOp] = []
        if added:
            patch += self._annotation_ops(serialise_networks(final))
        try:
            resources = merged_resources(container.get("resources"), counts)
        except QuantityError as exc:
            raise _Denied(
                f"{self.ref}: container {container.get('name')!r} {exc.field} is {exc.value!r}, "
                "not a whole number; extended resources are counted in units, e.g. '1'"
            ) from None
        if resources != container.get("resources"):
            path = pointer("spec", "containers", index, "resources")
            patch += diff_mapping(path, container.get("resources"), resources)
        patch += self._readiness_gate_ops()
        return Decision(allowed=True, patch=patch, warnings=tuple(self.warnings))

    def _profile(self, profiles: Profiles) -> BondProfile:
        name = self.annotations.get(PROFILE_ANNOTATION, DEFAULT_PROFILE)
        profile = profiles.get(name)
        if profile is None:
            have = ", ".join(sorted(profiles.profiles)) or "none"
            raise _Denied(
                f"{self.ref}: annotation {PROFILE_ANNOTATION} names profile {name!r}, which is "
                f"not defined (defined: {have}); use one of them or remove the annotation"
            )
        return profile

    def _container(self) -> tuple[int, Mapping[str, Any]]:
        containers = (self.pod.get("spec") or {}).get("containers") or []
        wanted = self.annotations.get(CONTAINER_ANNOTATION)
        if wanted is None:
            if not containers:
                raise _Denied(f"{self.ref}: spec.containers is empty; add the container to bond")
            return 0, containers[0]
        for index, container in enumerate(containers):
            if container.get("name") == wanted:
                return index, container
        have = ", ".join(str(c.get("name")) for c in containers) or "none"
        raise _Denied(
            f"{self.ref}: annotation {CONTAINER_ANNOTATION} names container {wanted!r}, which is "
            f"not in spec.containers (have: {have}); name one of them or remove the annotation"
        )

    def _entries(self) -> list[NetworkSelection]:
        """The pod's own networks annotation, parsed once for `needed` and `run`."""
        if self._parsed is not None:
            return self._parsed
        value = self.annotations.get(NETWORKS_ANNOTATION)
        try:
            self._parsed = [] if value is None else parse_networks(value)
        except AnnotationError as exc:
            raise _Denied(
                f"{self.ref}: annotation {NETWORKS_ANNOTATION} {exc}; fix it, or remove it and let "
                f"profile {self.profile.name!r} add the bond"
            ) from None
        return self._parsed

    def _merge(self, entries: list[NetworkSelection]) -> tuple[list[NetworkSelection], bool]:
        """The user's entries, then each profile attachment that is not already there."""
        final = list(entries)
        added = False
        for att in self.profile.attachments:
            if self._present(entries, att):
                continue
            final.append(NetworkSelection(att.name, att.namespace, att.interface))
            added = True
        ifaces = [self._ifname(i, e) for i, e in enumerate(final)]
        bond_at = ifaces.index(self.profile.bond.interface)
        for leg in self.profile.legs:
            if ifaces.index(leg.interface) > bond_at:
                raise _Denied(
                    f"{self.ref}: annotation {NETWORKS_ANNOTATION} lists the bond "
                    f"{self.profile.bond.describe()} before its link {leg.describe()}; Multus "
                    "attaches in order, so list the links first or remove the bond entry"
                )
        return final, added

    def _present(self, entries: list[NetworkSelection], att: Attachment) -> bool:
        want = (att.namespace or self.ns, att.name)
        for index, entry in enumerate(entries):
            ifname = self._ifname(index, entry)
            if ifname != att.interface:
                continue
            if entry.key(self.ns) == want:
                return True
            implicit = "" if entry.interface else " (Multus names an entry without one by position)"
            raise _Denied(
                f"{self.ref}: annotation {NETWORKS_ANNOTATION} entry {index} "
                f"({entry.describe()}) already uses interface {ifname}{implicit}, which profile "
                f"{self.profile.name!r} needs for {att.describe()}; give that entry another "
                "interface name or choose another profile"
            )
        return False

    def _foreign(self, entry: NetworkSelection) -> bool:
        """An entry naming a NAD in another namespace that the profile does not allow.

        The webhook reads NADs cluster-wide, the pod's author maybe not: such an entry is refused
        before any lookup, so neither the pool counts nor the text tell whether that NAD exists.
        The profile's own attachments are the administrator's choice and always allowed.
        """
        ns = entry.namespace
        if ns is None or ns == self.ns or ns in self.profile.allowed_namespaces:
            return False
        own = {(att.namespace or self.ns, att.name) for att in self.profile.attachments}
        return (ns, entry.name) not in own

    def _check_namespaces(self, entries: list[NetworkSelection]) -> None:
        for index, entry in enumerate(entries):
            if not self._foreign(entry):
                continue
            allowed = ", ".join(sorted({self.ns, *self.profile.allowed_namespaces}))
            raise _Denied(
                f"{self.ref}: annotation {NETWORKS_ANNOTATION} entry {index} "
                f"({entry.describe()}) names a network-attachment-definition in namespace "
                f"{entry.namespace}; profile {self.profile.name!r} allows the pod's own entries "
                f"from namespaces {allowed} only. Use a NAD in namespace {self.ns}, or have an "
                f"administrator add {entry.namespace!r} to the profile's allowedNamespaces"
            )

    @staticmethod
    def _ifname(index: int, entry: NetworkSelection) -> str:
        return entry.interface or f"net{index + 1}"

    def _nad_ref(self, att: Attachment) -> str:
        return f"network-attachment-definition {att.namespace or self.ns}/{att.name}"

    def _check_legs(self) -> None:
        pools: dict[str, Attachment] = {}
        for leg in self.profile.legs:
            nad = self.lookup(leg.namespace or self.ns, leg.name)
            ref = self._nad_ref(leg)
            if nad is None:
                raise _Denied(
                    f"{ref} does not exist (profile {self.profile.name!r}, leg {leg.interface}); "
                    "create it, or fix the profile's network"
                )
            if nad.resource_name is None:
                raise _Denied(
                    f"{ref} has no {RESOURCE_NAME_ANNOTATION} annotation; the bond profile "
                    f"{self.profile.name!r} needs one SR-IOV pool per NIC for leg {leg.interface}"
                )
            other = pools.get(nad.resource_name)
            if other is not None:
                # Short enough for a warning (the API server may cut those at 256 characters).
                first = f"{other.namespace or self.ns}/{other.name}"
                text = (
                    f"{self.ref}: legs {other.interface} ({first}) and {leg.interface} "
                    f"({leg.namespace or self.ns}/{leg.name}) both use pool {nad.resource_name}, "
                    "so both VFs may sit on one NIC; give each leg a NAD with its own pool"
                )
                if self.profile.require_distinct_pools:
                    raise _Denied(text)
                self.warnings.append(text)
            pools.setdefault(nad.resource_name, leg)

    def _check_bond(self) -> None:
        bond = self.profile.bond
        ref = self._nad_ref(bond)
        nad = self.lookup(bond.namespace or self.ns, bond.name)
        if nad is None:
            raise _Denied(
                f"{ref} does not exist (profile {self.profile.name!r}, bond {bond.interface}); "
                "create it, or fix the profile's bond network"
            )
        check = check_bond_nad(ref, nad, [leg.interface for leg in self.profile.legs])
        if check.problem is not None:
            raise _Denied(check.problem)
        self.warnings.extend(check.warnings)

    def _counts(self, final: list[NetworkSelection]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for index, entry in enumerate(final):
            nad = self.lookup(*entry.key(self.ns))
            if nad is None:
                ns, name = entry.key(self.ns)
                self.warnings.append(
                    f"{self.ref}: annotation entry {index} names network-attachment-definition "
                    f"{ns}/{name}, which does not exist; Multus will fail to attach it"
                )
            elif nad.resource_name is not None:
                counts[nad.resource_name] = counts.get(nad.resource_name, 0) + 1
        return counts

    def _readiness_gate_ops(self) -> list[PatchOp]:
        """The profile's readinessGate: the pod is Ready only while the agent says its bond is
        healthy (a gate can only be set at creation, so the webhook adds it)."""
        if not self.profile.readiness_gate:
            return []
        gates = (self.pod.get("spec") or {}).get("readinessGates")
        gate = {"conditionType": BOND_HEALTHY}
        if gates is None:
            return [{"op": "add", "path": "/spec/readinessGates", "value": [gate]}]
        if any(isinstance(g, Mapping) and g.get("conditionType") == BOND_HEALTHY for g in gates):
            return []
        return [{"op": "add", "path": "/spec/readinessGates/-", "value": gate}]

    def _annotation_ops(self, value: str) -> list[PatchOp]:
        # In scope means metadata.labels exists, so metadata is there to hold the annotations.
        old = self.meta.get("annotations")
        new = dict(old or {})
        new[NETWORKS_ANNOTATION] = value
        return diff_mapping("/metadata/annotations", old, new)


def _no_nads(namespace: str, name: str) -> None:
    return None
