"""The subtree diff's ops, applied, turn the old subtree into the new one."""

from __future__ import annotations

import copy
import random
from typing import Any

import jsonpatch
import pytest

from webhook.patch import diff_mapping, escape, pointer


def test_escape_follows_rfc6901() -> None:
    assert escape("k8s.v1.cni.cncf.io/networks") == "k8s.v1.cni.cncf.io~1networks"
    assert escape("a~b/c") == "a~0b~1c"
    assert pointer("spec", "containers", 0, "resources") == "/spec/containers/0/resources"


def _random_tree(rng: random.Random, depth: int) -> dict[str, Any]:
    keys = ["a", "b/c", "d~e", "intel.com/sriov_pf_a", "x"]
    out: dict[str, Any] = {}
    for key in rng.sample(keys, rng.randint(0, len(keys))):
        if depth > 0 and rng.random() < 0.4:
            out[key] = _random_tree(rng, depth - 1)
        else:
            out[key] = rng.choice(["1", "2", 3, None, [1, 2], True])
    return out


@pytest.mark.parametrize("seed", range(200))
def test_subtree_diff_turns_old_into_new(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    old = _random_tree(rng, 2)
    new = _random_tree(rng, 2) if rng.random() < 0.5 else {**old, **_random_tree(rng, 1)}
    doc: dict[str, Any] = {
        "metadata": {"name": "p", "annotations": old},
        "spec": {"containers": [{"name": "c"}]},
    }
    target = copy.deepcopy(doc)
    target["metadata"]["annotations"] = copy.deepcopy(new)
    ops = diff_mapping("/metadata/annotations", old, new)
    assert jsonpatch.apply_patch(doc, ops) == target


def test_absent_subtree_is_added_whole() -> None:
    assert diff_mapping("/spec/containers/0/resources", None, {"limits": {"x": "1"}}) == [
        {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"x": "1"}}}
    ]
