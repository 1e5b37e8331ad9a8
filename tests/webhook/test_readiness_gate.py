"""A profile with `readinessGate: true` makes the webhook add the bond agent's condition as a
readinessGate, once, beside the pod's own gates."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from tests.webhook.builders import pod, source
from webhook.mutation import BOND_HEALTHY, mutate
from webhook.profiles import ProfileError, parse_profiles

PROFILES = """
profiles:
  default:
    legs:
      - {network: sriov-pf-a, interface: net1}
      - {network: sriov-pf-b, interface: net2}
    bond: {network: bond-net, interface: bond0}
    readinessGate: %s
"""
GATE = {"conditionType": BOND_HEALTHY}


def _mutated(base: dict[str, Any], gate: str) -> dict[str, Any]:
    decision = mutate(base, "default", parse_profiles(PROFILES % gate), source().cached)
    assert decision.allowed, decision.message
    result: dict[str, Any] = jsonpatch.apply_patch(base, decision.patch)
    return result


@pytest.mark.parametrize(
    ("gates", "want"),
    [
        (None, [GATE]),
        ([{"conditionType": "example.com/Warm"}], [{"conditionType": "example.com/Warm"}, GATE]),
        ([GATE], [GATE]),
    ],
)
def test_the_gate_is_added_once(gates: list[dict[str, str]] | None, want: list[Any]) -> None:
    base = pod()
    if gates is not None:
        base["spec"]["readinessGates"] = gates
    assert _mutated(base, "true")["spec"]["readinessGates"] == want


def test_without_the_option_no_gate() -> None:
    assert "readinessGates" not in _mutated(pod(), "false")["spec"]


def test_a_bad_value_names_the_field() -> None:
    with pytest.raises(ProfileError, match=r"profiles\.default\.readinessGate: must be true"):
        parse_profiles(PROFILES % "'yes'")
