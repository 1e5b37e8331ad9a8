"""Attachment records: what the plugin tells the node's agent about each bond it made.

One JSON document per attachment (container id + bond interface), written by the plugin on ADD
and removed on DEL and GC (cni.plugin.records does the file work); the agent (cni.agent) reads
them to know which bonds to watch and which pod to report on. Pure: text in, data out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from cni.core.errors import invalid

# Where records go unless the network config says otherwise (its `attachmentsDir`).
DEFAULT_DIR = "/var/lib/bond-cni/attachments"
FORMAT = 1
SUFFIX = ".json"
_DIR = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)+$")
_ROOTS = ("/var/lib/bond-cni/", "/run/bond-cni/")
_NAME_PART = re.compile(r"^[A-Za-z0-9_.\-]+$")


# NamedTuples, not frozen dataclasses: every in-process ADD and DEL imports this module, and
# making the two classes costs ~0.7 ms as NamedTuples against ~3 ms as dataclasses (measured with
# python -X importtime on the host, 2026-11-30).


class Monitor(NamedTuple):
    """The bond's link monitor, as the profile configured it (the agent's timing context)."""

    mode: str
    miimon: int
    arp_interval: int
    updelay: int
    downdelay: int


class Attachment(NamedTuple):
    network: str  # the network config's `name` (GC removes only its own network's records)
    container_id: str
    netns: str
    bond: str
    slaves: tuple[str, ...]
    pod_namespace: str
    pod_name: str
    pod_uid: str  # "" when the runtime did not pass K8S_POD_UID
    monitor: Monitor

    @property
    def key(self) -> str:
        return file_name(self.container_id, self.bond)

    @property
    def pod(self) -> str:
        return f"{self.pod_namespace}/{self.pod_name}" if self.pod_name else ""


def file_name(container_id: str, bond: str) -> str:
    """The record's file name; both parts are already restricted (CNI_CONTAINERID, CNI_IFNAME)."""
    if not _NAME_PART.match(container_id) or not _NAME_PART.match(bond) or bond.startswith("."):
        raise ValueError(f"cannot name a record after {container_id!r} and {bond!r}")
    return f"{container_id}_{bond}{SUFFIX}"


def check_dir(value: object) -> str:
    """The `attachmentsDir` field: a folder under /var/lib/bond-cni or /run/bond-cni.

    The helper answers any root process that reaches its socket, so records (and GC's removals)
    stay in the plugin's own folders, as logFile stays in /var/log/bond-cni.
    """
    if (
        not isinstance(value, str)
        or not _DIR.match(value)
        or any(part in (".", "..") for part in value.split("/"))
        or not value.startswith(_ROOTS)
    ):
        raise invalid(
            "attachmentsDir",
            f"{value!r} is not a folder under {' or '.join(r.rstrip('/') for r in _ROOTS)}",
            f"a path like {DEFAULT_DIR} (the folder the node's bond agent reads)",
        )
    return value


def pod_of(cni_args: str) -> tuple[str, str, str]:
    """(namespace, name, uid) of the pod from CNI_ARGS ("K=V;K=V"); "" where not given."""
    found: dict[str, str] = {}
    for pair in cni_args.split(";"):
        key, sep, value = pair.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return (
        found.get("K8S_POD_NAMESPACE", ""),
        found.get("K8S_POD_NAME", ""),
        found.get("K8S_POD_UID", ""),
    )


def encode(record: Attachment) -> bytes:
    document: dict[str, Any] = {"format": FORMAT, **record._asdict()}
    document["slaves"] = list(record.slaves)
    document["monitor"] = record.monitor._asdict()
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} is {value!r}, not a string")
    return value


def _number(doc: Mapping[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where}: {key!r} is {value!r}, not a count")
    return value


def decode(data: bytes, where: str) -> Attachment:
    """An Attachment from a record file's bytes; ValueError naming `where` and the field."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{where}: not an attachment record of format {FORMAT}")
    slaves = doc.get("slaves")
    if not isinstance(slaves, list) or not all(isinstance(s, str) and s for s in slaves):
        raise ValueError(f"{where}: 'slaves' is {slaves!r}, not a list of interface names")
    monitor = doc.get("monitor")
    if not isinstance(monitor, dict):
        raise ValueError(f"{where}: 'monitor' is {monitor!r}, not an object")
    return Attachment(
        network=_text(doc, "network", where),
        container_id=_text(doc, "container_id", where),
        netns=_text(doc, "netns", where),
        bond=_text(doc, "bond", where),
        slaves=tuple(slaves),
        pod_namespace=_text(doc, "pod_namespace", where),
        pod_name=_text(doc, "pod_name", where),
        pod_uid=_text(doc, "pod_uid", where),
        monitor=Monitor(
            mode=_text(monitor, "mode", where + " monitor"),
            miimon=_number(monitor, "miimon", where + " monitor"),
            arp_interval=_number(monitor, "arp_interval", where + " monitor"),
            updelay=_number(monitor, "updelay", where + " monitor"),
            downdelay=_number(monitor, "downdelay", where + " monitor"),
        ),
    )
