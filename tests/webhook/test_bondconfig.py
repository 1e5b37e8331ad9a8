"""The text API (used by the chart tests on rendered NADs) and the stored-NAD API agree."""

from __future__ import annotations

import json

import pytest

from tests.webhook.builders import BOND_CONFIG, nad
from webhook.bondconfig import check_bond_config, check_bond_nad

CONFIGS = [
    json.dumps(BOND_CONFIG),
    json.dumps({**BOND_CONFIG, "failOverMac": 0}),
    json.dumps({**BOND_CONFIG, "links": [{"name": "net2"}, {"name": "net1"}]}),
    json.dumps({**BOND_CONFIG, "linksInContainer": False}),
    json.dumps({"plugins": [BOND_CONFIG]}),
    json.dumps({"type": "macvlan"}),
    "not json",
    "",
]


@pytest.mark.parametrize("config", CONFIGS)
def test_text_and_stored_checks_agree(config: str) -> None:
    legs = ["net1", "net2"]
    ref = "network-attachment-definition ns/bond"
    assert check_bond_config(ref, config, legs) == check_bond_nad(
        ref, nad("bond", None, config), legs
    )


def test_links_order_matters() -> None:
    swapped = json.dumps({**BOND_CONFIG, "links": [{"name": "net2"}, {"name": "net1"}]})
    assert check_bond_config("x", swapped, ["net1", "net2"]).problem is not None
