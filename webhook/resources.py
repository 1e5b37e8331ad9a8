"""Extended-resource counts on a container: integer quantities, requests equal to limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_QUANTITY = re.compile(r"^\+?([0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {
    None: 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def parse_count(value: object) -> int | None:
    """A whole quantity ("2", 2, "1k"), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    return int(match.group(1)) * _FACTORS[match.group(2)]


class QuantityError(ValueError):
    def __init__(self, field: str, value: object) -> None:
        super().__init__(field, value)
        self.field = field
        self.value = value


def merged_resources(
    resources: Mapping[str, Any] | None, counts: Mapping[str, int]
) -> dict[str, Any]:
    """`resources` with requests and limits of each pool set to max(count, the user's values).

    Everything else in `resources` is kept as it was; values already right are left untouched so a
    second pass produces no ops.
    """
    result: dict[str, Any] = dict(resources or {})
    requests = dict(result.get("requests") or {})
    limits = dict(result.get("limits") or {})
    for pool, count in counts.items():
        wanted = count
        for field, section in (("requests", requests), ("limits", limits)):
            if pool in section:
                have = parse_count(section[pool])
                if have is None:
                    raise QuantityError(f"resources.{field}[{pool}]", section[pool])
                wanted = max(wanted, have)
        for section in (requests, limits):
            if parse_count(section.get(pool)) != wanted or not isinstance(section.get(pool), str):
                section[pool] = str(wanted)
    if requests or "requests" in result:
        result["requests"] = requests
    if limits or "limits" in result:
        result["limits"] = limits
    return result
