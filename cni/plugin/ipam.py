"""Run the IPAM plugin named in the config, as the spec's delegation: the request's CNI variables
(not this process's: the helper serves many requests; and none of the caller's others, such as
LD_PRELOAD: cni.core.policy.ipam_env) and the same stdin."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from cni.core import result as results
from cni.core.errors import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    PLUGIN_FAILURE,
    CNIError,
)
from cni.core.policy import ipam_env
from cni.core.spec import highest_common

log = logging.getLogger("cni.plugin.ipam")


def find(plugin: str, cni_path: str) -> str:
    for directory in cni_path.split(os.pathsep):
        candidate = os.path.join(directory, plugin)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(INVALID_CONFIG, f"IPAM plugin {plugin!r} not found in CNI_PATH {cni_path!r}")


def _run(path: str, command: str, conf: Mapping[str, Any], env: Mapping[str, str]) -> bytes:
    child_env = ipam_env(env, command)
    proc = subprocess.run(
        [path], input=json.dumps(conf).encode(), env=child_env, capture_output=True, check=False
    )
    if proc.stderr:
        log.info(
            "%s %s stderr: %s",
            os.path.basename(path),
            command,
            proc.stderr.decode(errors="replace").strip(),
        )
    if proc.returncode != 0:
        try:
            err = json.loads(proc.stdout)
            code, msg, details = int(err["code"]), str(err["msg"]), str(err.get("details", ""))
        except (KeyError, TypeError, ValueError, RecursionError):
            code, msg, details = PLUGIN_FAILURE, "failed", proc.stdout.decode(errors="replace")
        raise CNIError(code, f"IPAM {os.path.basename(path)} {command}: {msg}", details)
    return proc.stdout


def _decode(out: bytes, plugin: str, command: str) -> dict[str, Any]:
    """IPAM's answer as a JSON object, or error 6 naming the plugin and quoting what it said."""
    try:
        data = json.loads(out)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        problem: str = str(exc) or type(exc).__name__
    else:
        if isinstance(data, dict):
            return data
        problem = f"a JSON {type(data).__name__}, not an object"
    raise CNIError(
        DECODE_FAILURE,
        f"IPAM {plugin} {command} printed no CNI result: {problem}",
        f"its stdout began {out[:200]!r}",
    )


def _versions(path: str, env: Mapping[str, str]) -> list[str]:
    out = _run(path, "VERSION", {"cniVersion": "0.4.0"}, env)
    versions = _decode(out, os.path.basename(path), "VERSION").get("supportedVersions")
    if not isinstance(versions, list):
        raise CNIError(
            DECODE_FAILURE,
            f"IPAM {os.path.basename(path)} VERSION: no supportedVersions list",
            f"its stdout began {out[:200]!r}",
        )
    return [str(v) for v in versions]


class Ipam:
    """One IPAM plugin of one config; speaks the highest version both sides know."""

    def __init__(self, conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self._conf = dict(conf)
        self._env = env
        self._type = str(conf["ipam"]["type"])
        self._path = find(self._type, env.get("CNI_PATH", ""))

    def _exec(self, command: str, conf: Mapping[str, Any]) -> bytes:
        try:
            return _run(self._path, command, conf, self._env)
        except CNIError as exc:
            if exc.code != INCOMPATIBLE_VERSION:
                raise
            # An older IPAM (Debian ships 1.0.0 plugins): retry at the highest common version.
            ours = str(conf.get("cniVersion", ""))
            common = highest_common(ours, _versions(self._path, self._env))
            if common is None or common == ours:
                raise
            log.info("IPAM %s speaks up to %s; retrying %s with it", self._type, common, command)
            downgraded = {**conf, "cniVersion": common}
            if "prevResult" in conf:
                downgraded["prevResult"] = results.parse(conf["prevResult"]).render(common)
            return _run(self._path, command, downgraded, self._env)

    def add(self) -> results.Result:
        out = self._exec("ADD", self._conf)
        parsed = results.parse(_decode(out, self._type, "ADD"), f"IPAM {self._type} result")
        if not parsed.ips:
            raise CNIError(PLUGIN_FAILURE, f"IPAM {self._type} returned no IP addresses")
        return parsed

    def delete(self) -> None:
        self._exec("DEL", self._conf)

    def check(self, prev: results.Result) -> None:
        self._exec("CHECK", {**self._conf, "prevResult": prev.render(self._conf["cniVersion"])})

    def status(self) -> None:
        if self._speaks_1_1("STATUS"):
            self._exec("STATUS", self._conf)

    def gc(self) -> None:
        if self._speaks_1_1("GC"):
            self._exec("GC", self._conf)

    def _speaks_1_1(self, command: str) -> bool:
        if "1.1.0" in _versions(self._path, self._env):
            return True
        log.info(
            "IPAM %s predates CNI 1.1.0, which defines %s: nothing to forward", self._type, command
        )
        return False
