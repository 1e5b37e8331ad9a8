"""One plugin invocation, as the CNI spec's skel does it: env and stdin in; the exit code, the
result or error JSON (stdout) and the log lines (stderr) out.

invoke() reads no process globals: the executable (main(), below) and the warm helper
(cni.helper.server) both call it with one request's environment and stdin. Imports stay lazy so
that VERSION and early errors cost little more than the interpreter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cni.core.errors import INVALID_ENV, IO_FAILURE, PLUGIN_FAILURE, CNIError
from cni.core.ifname import ifname_problem
from cni.core.policy import NodePolicy, check_host_links, check_ipam_type, check_netns_path
from cni.core.spec import LATEST, SUPPORTED_VERSIONS, check_version, decode

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

LogFile = Callable[[str], None]


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
    if ifname and (problem := ifname_problem(ifname)) is not None:
        raise CNIError(INVALID_ENV, f"CNI_IFNAME {ifname!r} {problem}")


def _check_netns(env: Mapping[str, str], policy: NodePolicy) -> None:
    """The helper's rule for CNI_NETNS: a file directly in a runtime's netns folder, not a
    symlink (or /proc/<pid>/ns/net with --proc-netns). That it is not the node's own netns is
    checked at each open (cni.kernel.netlink.open_netns), in process too."""
    path = env.get("CNI_NETNS", "")
    check_netns_path(path, policy)
    if policy.netns_folders is None or not path or path.startswith("/proc/"):
        return  # the runtime's own call, or a /proc path (a magic link by nature)
    if os.path.islink(path):
        raise CNIError(
            INVALID_ENV,
            f"CNI_NETNS {path!r} is a symlink, which the bond CNI helper does not follow",
            "pass the netns file the runtime pinned itself, not a link to one",
        )


def run(
    command: str,
    env: Mapping[str, str],
    stdin: bytes,
    log_file: LogFile | None = None,
    policy: NodePolicy | None = None,
) -> dict[str, Any] | None:
    """One invocation: the result to print (None for none), or CNIError. `log_file` is called
    with the config's logFile, once the config is valid. `policy` is what the node allows
    (default: the runtime's own call, NodePolicy.in_process(env))."""
    _check_env(command, env)
    policy = NodePolicy.in_process(env) if policy is None else policy
    if command == "VERSION":
        asked = decode(stdin).get("cniVersion") if stdin.strip() else None
        version = asked if isinstance(asked, str) and asked in SUPPORTED_VERSIONS else LATEST
        return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    data = decode(stdin)
    version = data.get("cniVersion", "0.1.0")
    check_version(str(version), command)
    from cni.core import config  # noqa: PLC0415
    from cni.plugin import commands  # noqa: PLC0415

    if command in ("ADD", "CHECK", "DEL"):
        _check_netns(env, policy)
    conf = config.parse(data, env.get("CNI_IFNAME") or None)
    if command == "ADD":
        check_host_links(conf.links_in_container, policy)
    if conf.ipam is not None:
        check_ipam_type(str(conf.ipam["type"]), policy)
    if conf.log_file and log_file is not None:
        log_file(conf.log_file)
    args = commands.Args(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        path=env.get("CNI_PATH", ""),
        env=dict(env),
        policy=policy,
    )
    handlers: dict[str, Callable[[commands.Args, config.BondConfig], dict[str, Any] | None]] = {
        "ADD": commands.cmd_add,
        "DEL": commands.cmd_del,
        "CHECK": commands.cmd_check,
        "STATUS": commands.cmd_status,
        "GC": commands.cmd_gc,
    }
    return handlers[command](args, conf)


def invoke(
    env: Mapping[str, str], stdin: bytes, policy: NodePolicy | None = None
) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of one invocation: what the plugin executable would give."""
    err = io.StringIO()
    with _logging(err, env.get("BOND_CNI_LOG_LEVEL", "")) as log_file:
        code, out = _answer(env.get("CNI_COMMAND", ""), env, stdin, log_file, policy)
    return code, out, err.getvalue().encode(errors="backslashreplace")


def _answer(
    command: str,
    env: Mapping[str, str],
    stdin: bytes,
    log_file: LogFile,
    policy: NodePolicy | None,
) -> tuple[int, bytes]:
    try:
        out = run(command, env, stdin, log_file, policy)
    except CNIError as exc:
        log.error("%s failed: code %d: %s %s", command or "?", exc.code, exc.msg, exc.details)
        return 1, _json(exc.to_dict(_error_version(stdin)))
    except Exception as exc:  # never a traceback: the runtime reads stdout, people read stderr
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
        log.error(
            "%s failed: internal error %s: %s (at %s)", command, type(exc).__name__, exc, line
        )
        error = CNIError(PLUGIN_FAILURE, f"internal error: {type(exc).__name__}", str(exc))
        return 1, _json(error.to_dict(_error_version(stdin)))
    return 0, b"" if out is None else _json(out)


def _json(data: Mapping[str, Any]) -> bytes:
    import json  # noqa: PLC0415 - stdlib json imports in ~2 ms, orjson in ~13 ms

    return (json.dumps(data, indent=2) + "\n").encode()


def _error_version(stdin: bytes) -> str:
    try:
        version = decode(stdin).get("cniVersion")
    except CNIError:
        return LATEST
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST


@contextmanager
def _logging(stderr: io.StringIO, level_name: str) -> Iterator[LogFile]:
    """The "cni" loggers write to `stderr` at `level_name` (BOND_CNI_LOG_LEVEL, default WARNING)
    for one invocation; the callable yielded adds the config's logFile (INFO and up). All of it
    is undone after, so the helper's next request in the same process starts clean."""
    root = logging.getLogger("cni")
    saved = list(root.handlers), root.level
    level = logging.getLevelNamesMapping().get(level_name.upper() or "WARNING")
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("bond-cni %(levelname)s %(message)s"))
    handler.setLevel(level or logging.WARNING)
    root.addHandler(handler)
    root.setLevel(handler.level)
    added: list[logging.Handler] = [handler]
    if level is None:
        log.warning("BOND_CNI_LOG_LEVEL %r is not a logging level; using WARNING", level_name)

    def log_file(path: str) -> None:
        # config.parse allows only a file directly in LOG_DIR; a symlink planted there, as the
        # folder or as the file, must not lead the append elsewhere: the folder is opened
        # without following a link, the file relative to it, likewise.
        folder, name = os.path.split(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o755)
            where = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd = os.open(name, flags, 0o640, dir_fd=where)
            finally:
                os.close(where)
            stream = open(fd, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            log.warning("cannot open logFile %s: %s", path, exc)
            return
        file_handler = logging.StreamHandler(stream)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        file_handler.setLevel(logging.INFO)
        root.addHandler(file_handler)
        added.append(file_handler)
        root.setLevel(min(root.level, logging.INFO))

    try:
        yield log_file
    finally:
        for each in added:
            root.removeHandler(each)
            each.close()
            if each is not handler and isinstance(each, logging.StreamHandler):
                each.stream.close()  # the logFile's; a StreamHandler leaves its stream open
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def main() -> int:
    """The plugin executable: this process's environment and stdin, answered on stdout/stderr."""
    try:
        stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    except OSError as exc:
        error = CNIError(IO_FAILURE, "cannot read the network config from stdin", str(exc))
        sys.stdout.buffer.write(_json(error.to_dict(LATEST)))
        return 1
    code, out, err = invoke(os.environ, stdin)
    sys.stderr.buffer.write(err)
    sys.stderr.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return code
