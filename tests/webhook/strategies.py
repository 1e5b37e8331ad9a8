"""Hypothesis strategies: pods (well-formed, odd and wrong-shaped), bond profiles and NADs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.webhook.builders import BOND_CONFIG
from webhook.annotation import NETWORKS_ANNOTATION
from webhook.mutation import CONTAINER_ANNOTATION, PROFILE_ANNOTATION
from webhook.nads import NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import Attachment, BondProfile, Profiles

NAMESPACES = ("default", "team")
NETWORKS = ("sriov-pf-a", "sriov-pf-b", "sriov-pf-c", "sriov-pf-d", "bond-net", "data-net")
INTERFACES = ("net1", "net2", "net3", "net4", "bond0", "data0", "eth1")
USER_INTERFACES = ("data1", "data2", "ext0")
POOLS = ("intel.com/sriov_pf_a", "intel.com/sriov_pf_b", "intel.com/sriov_pf_c", "example.com/x")
PROFILE_NAMES = ("default", "gold")
CONTAINER_NAMES = ("app", "sidecar", "db")

# Any JSON value, small: what a hostile or broken client may put in any field.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=4,
)


def _rarely(draw: st.DrawFn, n: int) -> bool:
    """True about one time in `n` (a middle value: Hypothesis favours the ends of a range)."""
    return draw(st.integers(0, n - 1)) == n // 2


def _field(draw: st.DrawFn, strategy: st.SearchStrategy[Any], broken: bool) -> Any:
    """A value of `strategy`; in a broken pod, now and then any JSON value (a wrong shape)."""
    return draw(json_values if broken and draw(st.booleans()) else strategy)


@st.composite
def bond_profiles(draw: st.DrawFn, name: str) -> BondProfile:
    """Two to four legs on distinct networks (now and then one twice) and a bond."""
    interfaces = draw(st.permutations(INTERFACES))
    networks = draw(st.permutations(NETWORKS))
    legs = draw(st.integers(2, 4))
    if _rarely(draw, 10):
        networks[1] = networks[0]
    attachments = [
        Attachment(networks[i], draw(st.sampled_from((None, None, *NAMESPACES))), interfaces[i])
        for i in range(legs + 1)
    ]
    return BondProfile(
        name=name,
        legs=tuple(attachments[:legs]),
        bond=attachments[legs],
        require_distinct_pools=draw(st.booleans()),
    )


@st.composite
def profile_sets(draw: st.DrawFn) -> Profiles:
    names = ["default", *(["gold"] if draw(st.booleans()) else [])]
    return Profiles({name: draw(bond_profiles(name)) for name in names})


@st.composite
def nad_sources(draw: st.DrawFn, profiles: Profiles) -> StaticNadSource:
    """The NADs the profiles name, mostly right (legs on distinct pools, a bond over the legs),
    some wrong or missing; and a few others, that a pod's own annotation may name."""
    nads: dict[tuple[str, str], NetworkAttachmentDefinition] = {}
    pools = iter(draw(st.permutations(POOLS)) * 2)
    for profile in profiles.profiles.values():
        for att in profile.attachments:
            if _rarely(draw, 15):
                continue  # missing
            if att is profile.bond:
                links = [leg.interface for leg in profile.legs]
                bad = _rarely(draw, 6)
                text = draw(st.sampled_from(BAD_BONDS)) if bad else json.dumps(bond_config(links))
                pool = None
            else:
                text, pool = json.dumps({"type": "sriov"}), next(pools)
                if _rarely(draw, 10):
                    pool = draw(st.sampled_from((None, *POOLS)))
            # A profile's network without a namespace is looked up in the pod's.
            for namespace in (att.namespace,) if att.namespace else NAMESPACES:
                nad = NetworkAttachmentDefinition(namespace, att.name, pool, text)
                nads.setdefault(nad.key, nad)
    for namespace in NAMESPACES:
        for name in draw(st.lists(st.sampled_from(NETWORKS), max_size=3, unique=True)):
            pool = draw(st.sampled_from((None, *POOLS)))
            nad = NetworkAttachmentDefinition(namespace, name, pool, '{"type": "sriov"}')
            nads.setdefault(nad.key, nad)
    return StaticNadSource(nads.values())


def bond_config(links: list[str], **extra: Any) -> dict[str, Any]:
    return {**BOND_CONFIG, "links": [{"name": link} for link in links], **extra}


BAD_BONDS = (
    "{",
    "[]",
    json.dumps(bond_config(["net1"])),
    json.dumps(bond_config(["net1", "net2"], linksInContainer=False)),
    json.dumps(bond_config(["net1", "net2"], failOverMac=0)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Profiles, StaticNadSource]:
    profiles = draw(profile_sets())
    return profiles, draw(nad_sources(profiles))


@st.composite
def selections(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": draw(st.sampled_from(NETWORKS))}
    if draw(st.booleans()):
        entry["namespace"] = draw(st.sampled_from(NAMESPACES))
    if not _rarely(draw, 4):
        # Mostly an interface no profile uses; sometimes one a profile needs.
        mine = not _rarely(draw, 3)
        entry["interface"] = draw(st.sampled_from(USER_INTERFACES if mine else INTERFACES))
    if _rarely(draw, 6):
        entry["mac"] = "02:00:00:00:00:01"  # kept as the user wrote it
    return entry


# What Go's encoding/json (Multus) refuses or Python's json module treats differently.
NASTY_ANNOTATIONS = (
    '[{"name": "data-net", "x": 123456789012345678901234567890}]',
    '[{"name": "data-net", "x": 1e999}]',
    '[{"name": "data-net", "x": NaN}]',
    "[Infinity]",
    '[{"name": "data-net"}] trailing',
    '[{"name": "data-net", "name": "bond-net"}]',
    '[{"name": "data-net", "interface": "a:b"}]',
    '[{"name": "data\\u0000net"}]',
    '[{"name": "da/ta"}]',
    "[" * 5000 + "]" * 5000,
    "1" * 5000,
    "[" + "1" * 5000 + "]",
)


def _short(entry: dict[str, Any]) -> str:
    text = str(entry["name"])
    if "namespace" in entry:
        text = f"{entry['namespace']}/{text}"
    if "interface" in entry:
        text = f"{text}@{entry['interface']}"
    return text


@st.composite
def networks_annotations(draw: st.DrawFn) -> str:
    entries = draw(st.lists(selections(), max_size=4))
    form = draw(st.sampled_from(("json", "json", "short", "text", "nasty")))
    if form == "nasty":
        return draw(st.sampled_from(NASTY_ANNOTATIONS))
    if form == "json":
        return json.dumps(entries)
    if form == "short":
        return ",".join(_short(e) for e in entries if "mac" not in e)
    return draw(st.text(max_size=30))


quantities = st.one_of(
    st.integers(0, 4).map(str),
    st.sampled_from(("1k", "2Ki", "+3", " 1 ", "1.5", "-1", "one", "")),
    st.integers(-2, 4),
    st.floats(0, 4),
    st.booleans(),
    st.none(),
)


@st.composite
def resources(draw: st.DrawFn, broken: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("requests", "limits", "claims"):
        if draw(st.booleans()):
            keys = st.sampled_from((*POOLS, "cpu", "memory"))
            value = draw(st.dictionaries(keys, quantities, max_size=3))
            out[section] = _field(draw, st.just(value), broken)
    return out


@st.composite
def containers(draw: st.DrawFn, broken: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": draw(st.sampled_from(CONTAINER_NAMES)), "image": "x"}
    if draw(st.booleans()):
        container["resources"] = _field(draw, resources(broken), broken)
    return container


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """Pods as a client might send them; one in four broken (fields of the wrong JSON type)."""
    broken = _rarely(draw, 4)
    labels: dict[str, Any] = {**draw(st.dictionaries(st.sampled_from(("app", "tier")), st.text()))}
    if not _rarely(draw, 6):
        labels["bond"] = "true"
    elif draw(st.booleans()):
        labels["bond"] = draw(json_values)
    annotations: dict[str, Any] = {}
    if draw(st.booleans()):
        annotations[PROFILE_ANNOTATION] = draw(st.sampled_from(PROFILE_NAMES))
    if _rarely(draw, 6):
        annotations[CONTAINER_ANNOTATION] = draw(st.sampled_from(CONTAINER_NAMES))
    if draw(st.booleans()):
        annotations[NETWORKS_ANNOTATION] = draw(networks_annotations())
    if _rarely(draw, 6):
        annotations["example.com/other"] = _field(draw, st.text(max_size=5), broken)
    meta: dict[str, Any] = {"labels": _field(draw, st.just(labels), broken)}
    name = draw(st.sampled_from(("name", "generateName", None)))
    if name is not None:
        meta[name] = _field(draw, st.sampled_from(("web", "web-")), broken)
    if draw(st.booleans()):
        meta["namespace"] = _field(draw, st.sampled_from(NAMESPACES), broken)
    empty_annotations: bool = draw(st.booleans())
    if annotations or empty_annotations:
        meta["annotations"] = _field(draw, st.just(annotations), broken)
    spec: dict[str, Any] = {
        "containers": _field(draw, st.lists(containers(broken), min_size=1, max_size=3), broken)
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _field(draw, st.just(meta), broken),
        "spec": _field(draw, st.just(spec), broken),
    }
