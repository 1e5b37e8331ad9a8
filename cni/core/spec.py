"""CNI wire basics: the spec versions this plugin speaks, what each allows, decoding."""

from __future__ import annotations

import json
from typing import Any

from cni.core.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# The first spec version that defines each command.
_COMMAND_SINCE = {
    "ADD": "0.3.0",
    "DEL": "0.3.0",
    "CHECK": "0.4.0",
    "STATUS": "1.1.0",
    "GC": "1.1.0",
}


def version_key(version: str) -> tuple[int, ...]:
    """ "1.0.0" -> (1, 0, 0); anything unparsable sorts before every real version."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def at_least(version: str, minimum: str) -> bool:
    return version_key(version) >= version_key(minimum)


def check_version(version: str, command: str) -> None:
    """Refuse a config version we do not speak, or one too old for the command."""
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    since = _COMMAND_SINCE.get(command)
    if since is not None and not at_least(version, since):
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion {since} or later, config is {version!r}",
        )


def highest_common(ours: str, theirs: list[str]) -> str | None:
    """The highest version both sides speak, no higher than `ours`."""
    common = [v for v in theirs if v in SUPPORTED_VERSIONS and at_least(ours, v)]
    return max(common, key=version_key) if common else None


def decode(stdin: bytes) -> dict[str, Any]:
    """The config object from stdin, or error 6."""
    try:
        data = json.loads(stdin)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        raise CNIError(DECODE_FAILURE, "failed to decode network config", str(exc)) from exc
    if not isinstance(data, dict):
        raise CNIError(DECODE_FAILURE, "network config is not a JSON object")
    return data
