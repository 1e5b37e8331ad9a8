"""The CNI error type and the specification's error codes."""

from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_FOR_ADD = 51
# Codes above 99 are the plugin's own: a netlink or IPAM step failed.
PLUGIN_FAILURE = 100


class CNIError(Exception):
    """An error the dispatcher prints as the spec's error JSON."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, object]:
        return {
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"


def invalid(field: str, problem: str, allowed: str = "") -> CNIError:
    """Error 7 naming the field and, where there is a fixed set, the allowed values."""
    hint = f"; allowed: {allowed}" if allowed else ""
    return CNIError(INVALID_CONFIG, f"invalid bond config field {field!r}: {problem}{hint}")


def apply_policy(field: str, policy: str, problems: list[str]) -> list[str]:
    """`enforce` turns problems into error 7; `warn` returns them as warnings; `off` drops them."""
    if not problems or policy == "off":
        return []
    if policy == "enforce":
        raise CNIError(
            INVALID_CONFIG,
            f"{field}: enforce refused the bond: " + "; ".join(problems),
            f"set {field}: warn to proceed anyway",
        )
    return problems
