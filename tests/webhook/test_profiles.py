from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.webhook.builders import EXAMPLES
from webhook.profiles import Attachment, ProfileError, ProfileStore, parse_profiles

GOOD = (EXAMPLES / "profiles.yaml").read_text()


def test_example_profile() -> None:
    profile = parse_profiles(GOOD).get("default")
    assert profile is not None
    assert profile.legs == (
        Attachment("sriov-pf-a", None, "net1"),
        Attachment("sriov-pf-b", None, "net2"),
    )
    assert profile.bond == Attachment("bond-net", None, "bond0")
    assert profile.require_distinct_pools is True


def test_namespaced_network_and_defaults() -> None:
    text = yaml.safe_dump(
        {"profiles": {"p": {"legs": [{"network": "n/a", "interface": "x1"}, LEG2], "bond": BOND}}}
    )
    profile = parse_profiles(text).get("p")
    assert profile is not None
    assert profile.legs[0] == Attachment("a", "n", "x1")
    assert profile.require_distinct_pools is True


LEG1 = {"network": "a", "interface": "n1"}
LEG2 = {"network": "b", "interface": "n2"}
BOND = {"network": "c", "interface": "b"}


def _doc(**profile: Any) -> str:
    body = {"legs": [LEG1, LEG2], "bond": BOND, **profile}
    return yaml.safe_dump({"profiles": {"d": {k: v for k, v in body.items() if v is not None}}})


AT = "profiles: profiles.d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: [", "profiles: not valid YAML"),
        ("[]", "profiles: expected a mapping with a 'profiles' mapping at the top"),
        ("profiles: {}", "profiles: 'profiles' is empty; define at least 'default'"),
        (
            "profiles: {d: {}}\nextra: 1",
            "profiles: unknown top-level keys ['extra']; only 'profiles'",
        ),
        ("profiles: {d: 1}", f"{AT}: expected a mapping with 'legs' and 'bond'"),
        (_doc(legs=[LEG1]), f"{AT}.legs: a bond needs a list of two or more legs"),
        (_doc(bond=None), f"{AT}.bond: missing; name the bond NAD and its interface"),
        (
            _doc(requireDistinctPool=True),
            f"{AT}: unknown keys ['requireDistinctPool']; "
            "allowed ['allowedNamespaces', 'bond', 'legs', 'readinessGate', "
            "'requireDistinctPools']",
        ),
        (_doc(requireDistinctPools="yes"), f"{AT}.requireDistinctPools: must be true or false"),
        (
            _doc(bond={"network": "c", "interface": "n1"}),
            f"{AT}: interface 'n1' is used twice; each attachment needs its own",
        ),
        (
            _doc(legs=[{"network": "A_b", "interface": "n1"}, LEG2]),
            f"{AT}.legs[0].network: 'A_b' is not a NAD name or namespace/name "
            "(lower-case letters, digits and '-')",
        ),
        (
            _doc(legs=[{"network": "a"}, LEG2]),
            f"{AT}.legs[0].interface: missing; give the interface name in the pod",
        ),
        (
            _doc(bond={"network": "c", "interface": "averyveryverylongname"}),
            f"{AT}.bond.interface: 'averyveryverylongname' is longer than 15 characters",
        ),
        (
            _doc(bond={**BOND, "ifname": "x"}),
            f"{AT}.bond: unknown keys ['ifname']; allowed ['interface', 'network']",
        ),
        (
            _doc(legs=[{"interface": "n1"}, LEG2]),
            f"{AT}.legs[0].network: missing; give a NAD name or namespace/name",
        ),
    ],
)
def test_invalid_profiles(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profiles(text)
    assert str(err.value).startswith(message)


def _configmap_swap(mount: Path, text: str, generation: int) -> None:
    """Update a volume the way the kubelet does: a new timestamped dir, then rename ..data."""
    target = mount / f"..gen{generation}"
    target.mkdir()
    (target / "profiles.yaml").write_text(text)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, mount / "..data")


def test_store_follows_configmap_updates_and_keeps_last_good(tmp_path: Path) -> None:
    _configmap_swap(tmp_path, GOOD, 1)
    (tmp_path / "profiles.yaml").symlink_to("..data/profiles.yaml")
    store = ProfileStore(tmp_path / "profiles.yaml")
    assert list(store.current().profiles) == ["default"]

    _configmap_swap(tmp_path, GOOD.replace("default:", "gold:"), 2)
    assert list(store.current().profiles) == ["gold"]
    assert store.reloads == 1

    _configmap_swap(tmp_path, "profiles: {}", 3)
    assert list(store.current().profiles) == ["gold"], "a bad update keeps the last good profiles"
    assert store.last_error is not None and "'profiles' is empty" in store.last_error

    _configmap_swap(tmp_path, GOOD, 4)
    assert list(store.current().profiles) == ["default"]
    assert store.last_error is None


def test_store_refuses_a_bad_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("profiles: {}")
    with pytest.raises(ProfileError):
        ProfileStore(path)
