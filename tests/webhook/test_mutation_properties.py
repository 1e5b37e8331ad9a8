"""Properties of mutate() over random pods, labels, annotations, resources, profiles and NADs."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from tests.webhook.strategies import pods, scenarios
from webhook.mutation import mutate, needed_nads
from webhook.nads import NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import Profiles

PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
# A denial starts with the object it is about (names may be any text here), then names a field.
OBJECT = re.compile(r"^(pod|network-attachment-definition) [^/ ]+/")
FIELDS = (
    "metadata",
    "spec",
    "annotation",
    "resources.",
    "(profile '",  # a NAD the profile names: "(profile 'default', leg net1)"
    "legs ",
)


class _Recording:
    def __init__(self, nads: StaticNadSource) -> None:
        self._nads = nads
        self.asked: set[tuple[str, str]] = set()

    def __call__(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.asked.add((namespace, name))
        return self._nads.cached(namespace, name)


@PROPERTIES
@given(
    pod=pods(),
    namespace=st.sampled_from((None, "default", "team")),
    scenario=scenarios(),
)
def test_mutate_never_raises_and_its_patch_applies_once(
    pod: dict[str, Any], namespace: str | None, scenario: tuple[Profiles, StaticNadSource]
) -> None:
    profiles, nads = scenario
    original = copy.deepcopy(pod)
    lookup = _Recording(nads)
    decision = mutate(pod, namespace, profiles, lookup)
    event(decision.outcome)
    assert pod == original, "mutate() changed its input"
    assert lookup.asked <= set(needed_nads(pod, namespace, profiles))
    if not decision.allowed:
        assert decision.patch == []
        assert OBJECT.match(decision.message), decision.message
        assert any(f in decision.message for f in FIELDS), decision.message
        return
    if not decision.in_scope:
        assert decision.patch == []
        return
    patched = jsonpatch.apply_patch(pod, decision.patch)
    again = mutate(patched, namespace, profiles, nads.cached)
    assert again.allowed, again.message
    assert again.patch == [], "the reinvocation changed the pod again"
    assert again.warnings == decision.warnings
