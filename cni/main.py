"""The plugin's entry point: env and stdin in, result or error JSON out, logs on stderr only.

Imports stay lazy so that VERSION and early errors cost little more than the interpreter.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from cni.errors import INVALID_ENV, PLUGIN_FAILURE, CNIError
from cni.spec import LATEST, SUPPORTED_VERSIONS, check_version, decode, valid_ifname

_REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "STATUS": ("CNI_PATH",),
    "GC": ("CNI_PATH",),
    "VERSION": (),
}
_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
log = logging.getLogger("cni")


def _write(data: Mapping[str, Any]) -> None:
    import json  # noqa: PLC0415 - stdlib json imports in ~2 ms, orjson in ~13 ms

    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _setup_logging(log_file: str | None) -> None:
    root = logging.getLogger("cni")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bond-cni %(levelname)s %(message)s"))
        handler.setLevel(os.environ.get("BOND_CNI_LOG_LEVEL", "WARNING").upper())
        root.addHandler(handler)
        root.setLevel(handler.level)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file)
        except OSError as exc:
            log.warning("cannot open logFile %s: %s", log_file, exc)
            return
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.INFO)
        root.addHandler(file_handler)
        root.setLevel(min(root.level, logging.INFO))


def _check_env(command: str, env: Mapping[str, str]) -> None:
    if command not in _REQUIRED_ENV:
        raise CNIError(
            INVALID_ENV, f"unknown CNI_COMMAND {command!r}", "one of " + ", ".join(_REQUIRED_ENV)
        )
    missing = [name for name in _REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables missing for {command}: {missing}")
    container = env.get("CNI_CONTAINERID", "")
    if container and not _CONTAINER_ID.match(container):
        raise CNIError(INVALID_ENV, f"CNI_CONTAINERID {container!r} is not a valid container id")
    ifname = env.get("CNI_IFNAME", "")
    if ifname and not valid_ifname(ifname):
        raise CNIError(INVALID_ENV, f"CNI_IFNAME {ifname!r} is not a valid interface name")


def run(command: str, env: Mapping[str, str], stdin: bytes) -> dict[str, Any] | None:
    """One invocation: the result to print (None for none), or CNIError."""
    _check_env(command, env)
    if command == "VERSION":
        asked = decode(stdin).get("cniVersion") if stdin.strip() else None
        version = asked if isinstance(asked, str) and asked in SUPPORTED_VERSIONS else LATEST
        return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    data = decode(stdin)
    version = data.get("cniVersion", "0.1.0")
    check_version(str(version), command)
    from cni import commands, config  # noqa: PLC0415

    conf = config.parse(data, env.get("CNI_IFNAME") or None)
    _setup_logging(conf.log_file)
    args = commands.Args(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        path=env.get("CNI_PATH", ""),
        env={k: v for k, v in env.items() if k.startswith("CNI_")},
    )
    handlers: dict[str, Callable[[commands.Args, config.BondConfig], dict[str, Any] | None]] = {
        "ADD": commands.cmd_add,
        "DEL": commands.cmd_del,
        "CHECK": commands.cmd_check,
        "STATUS": commands.cmd_status,
        "GC": commands.cmd_gc,
    }
    return handlers[command](args, conf)


def _error_version(stdin: bytes) -> str:
    try:
        version = decode(stdin).get("cniVersion")
    except CNIError:
        return LATEST
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST


def main() -> int:
    _setup_logging(None)
    env = dict(os.environ)
    command = env.get("CNI_COMMAND", "")
    stdin = b""
    try:
        stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
        if command in ("ADD", "DEL", "CHECK"):
            from cni.netlink import lean_import  # noqa: PLC0415

            lean_import()
        out = run(command, env, stdin)
    except CNIError as exc:
        log.error("%s failed: code %d: %s %s", command or "?", exc.code, exc.msg, exc.details)
        _write(exc.to_dict(_error_version(stdin)))
        return 1
    except Exception as exc:  # never a traceback: the runtime reads stdout, people read stderr
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
        log.error(
            "%s failed: internal error %s: %s (at %s)", command, type(exc).__name__, exc, line
        )
        error = CNIError(PLUGIN_FAILURE, f"internal error: {type(exc).__name__}", str(exc))
        _write(error.to_dict(_error_version(stdin)))
        return 1
    if out is not None:
        _write(out)
    return 0


def entry() -> int:
    """The executable: the plugin without arguments (as runtimes call it), `serve`/`probe` with."""
    if len(sys.argv) > 1:
        from cni.helper import cli  # noqa: PLC0415

        return cli(sys.argv[1:])
    return main()


if __name__ == "__main__":
    sys.exit(entry())
