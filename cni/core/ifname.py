"""Interface names: one rule for both sides (the webhook at admission, the plugin on the node).

The kernel's dev_valid_name() and the CNI spec's (libcni ValidateInterfaceName): 1-15 bytes
(IFNAMSIZ - 1), not "." or "..", no "/", ":" or whitespace. Also refused here: control
characters (a NUL cuts the name short in the kernel) and "%", which the kernel reads as a
template ("net%d") and replaces with a number, so the link would not get the name asked for.
"""

from __future__ import annotations

MAX_BYTES = 15


def ifname_problem(name: object) -> str | None:
    """Why `name` cannot be an interface name, as the end of a sentence; None when it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    size = len(name.encode(errors="surrogateescape"))
    if len(name) > MAX_BYTES:
        return f"is longer than {MAX_BYTES} characters"
    if size > MAX_BYTES:
        return f"is {size} bytes in UTF-8, longer than the kernel's {MAX_BYTES}"
    if name in (".", ".."):
        return "is '.' or '..'"
    for bad in "/:%":
        if bad in name:
            return f"contains {bad!r}"
    if any(ch.isspace() for ch in name):
        return "contains whitespace"
    if any(not ch.isprintable() for ch in name):
        return "contains a control character"
    return None
