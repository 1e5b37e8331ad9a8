"""JSON Patch ops for a changed subtree, without copying or diffing the whole object.

Equivalent, when applied, to jsonpatch's diff of a deep copy (tests/webhook/test_patch.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PatchOp = dict[str, Any]


def escape(token: str) -> str:
    """A JSON Pointer reference token (RFC 6901): '~' -> '~0', '/' -> '~1'."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def diff_mapping(path: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[PatchOp]:
    """Ops turning `old` (None: absent) at `path` into `new`; keys only in `old` are removed."""
    if old is None:
        return [{"op": "add", "path": path, "value": new}]
    ops: list[PatchOp] = []
    for key, value in new.items():
        child = f"{path}/{escape(key)}"
        if key not in old:
            ops.append({"op": "add", "path": child, "value": value})
            continue
        before = old[key]
        if before == value and type(before) is type(value):
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            ops.extend(diff_mapping(child, before, value))
        else:
            ops.append({"op": "replace", "path": child, "value": value})
    ops.extend({"op": "remove", "path": f"{path}/{escape(key)}"} for key in old if key not in new)
    return ops
