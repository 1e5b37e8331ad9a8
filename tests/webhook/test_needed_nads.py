"""needed_nads: every NAD the mutation will look up, so the endpoint fetches all misses at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webhook.builders import (
    EXAMPLES,
    USER_NETWORK,
    example_nads,
    example_profiles,
    many_legs_nads,
    many_legs_profiles,
    pod,
)
from webhook.mutation import mutate, needed_nads
from webhook.nads import NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import Profiles, parse_profiles

SEED = [("default", "sriov-pf-a"), ("default", "sriov-pf-b"), ("default", "bond-net")]
MANY = parse_profiles(many_legs_profiles(3, 4))
ALLOWS_OTHER = parse_profiles(
    (EXAMPLES / "profiles.yaml").read_text() + "    allowedNamespaces: [other]\n"
)


def _legs(n: int, namespace: str = "default") -> list[tuple[str, str]]:
    legs = [(namespace, f"sriov-pf-{'abcd'[i]}") for i in range(n)]
    return [*legs, (namespace, f"bond-{n}")]


def _profile(n: int) -> dict[str, str]:
    return {"bond-injector.io/profile": f"legs-{n}"}


CASES: list[tuple[str, dict[str, Any], str | None, Profiles, list[tuple[str, str]]]] = [
    ("seed", pod(), "default", example_profiles(), SEED),
    ("request namespace", pod(), "team", example_profiles(),
     [("team", name) for _, name in SEED]),
    ("pod's own namespace", pod(namespace="own"), None, example_profiles(),
     [("own", name) for _, name in SEED]),
    ("user network", pod(networks=[USER_NETWORK]), "default", example_profiles(),
     [*SEED, ("default", "data-net")]),
    ("user network, other namespace the profile does not allow: never asked for",
     pod(networks="other/data-net@data0"), "default", example_profiles(), SEED),
    ("user network, other namespace the profile allows", pod(networks="other/data-net@data0"),
     "default", ALLOWS_OTHER, [*SEED, ("other", "data-net")]),
    ("user lists a leg itself: once", pod(networks="sriov-pf-b@net2,data-net@data0"),
     "default", example_profiles(), [*SEED, ("default", "data-net")]),
    ("three legs", pod(annotations=_profile(3)), "default", MANY, _legs(3)),
    ("four legs", pod(annotations=_profile(4)), "default", MANY, _legs(4)),
    ("four legs and a user network", pod(annotations=_profile(4), networks=[USER_NETWORK]),
     "default", MANY, [*_legs(4), ("default", "data-net")]),
    ("broken annotation: only the profile's", pod(networks="[{"), "default",
     example_profiles(), SEED),
    ("not labelled", pod(labels={}), "default", example_profiles(), []),
    ("unknown profile", pod(annotations={"bond-injector.io/profile": "gold"}), "default",
     example_profiles(), []),
    ("wrong shape", {"metadata": {"labels": {"bond": "true"}, "annotations": []}}, "default",
     example_profiles(), []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pod_", "namespace", "profiles", "keys"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_needed_nads(
    pod_: dict[str, Any],
    namespace: str | None,
    profiles: Profiles,
    keys: list[tuple[str, str]],
) -> None:
    assert needed_nads(pod_, namespace, profiles) == keys


class _Recording(StaticNadSource):
    def __init__(self, nads: list[NetworkAttachmentDefinition]) -> None:
        super().__init__(nads)
        self.asked: list[tuple[str, str]] = []

    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.asked.append((namespace, name))
        return super().cached(namespace, name)


@pytest.mark.parametrize(
    ("pod_", "namespace", "profiles", "keys"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("nads", ["present", "absent"])
def test_mutate_looks_up_no_other_nad(
    pod_: dict[str, Any],
    namespace: str | None,
    profiles: Profiles,
    keys: list[tuple[str, str]],
    nads: str,
) -> None:
    present = [*many_legs_nads(), *example_nads()]
    recording = _Recording(present if nads == "present" else [])
    mutate(pod_, namespace, profiles, recording.cached)
    assert set(recording.asked) <= set(keys)
