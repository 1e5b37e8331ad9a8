"""Kubernetes label selectors, evaluated as the API server does for a webhook's selectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy a LabelSelector; an empty or absent selector matches everything."""
    return not unmet(selector, labels)


def unmet(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> list[str]:
    """The requirements `labels` do not meet, each as text (`key NotIn [true]`), for messages."""
    if not selector:
        return []
    problems = [
        f"{key}={value}"
        for key, value in (selector.get("matchLabels") or {}).items()
        if labels.get(key) != value
    ]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        present, value = key in labels, labels.get(key)
        ok = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            problems.append(f"{key} {op} {list(values)}" if values else f"{key} {op}")
    return problems
