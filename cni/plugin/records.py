"""The plugin's side of the attachment records: write one on ADD, remove it on DEL and GC.

A record appears whole or not at all (temp file, fsync, rename, fsync of the folder), so the
agent never reads half a record and a crash never leaves one that a reboot would lose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from cni.core import records
from cni.core.config import BondConfig

log = logging.getLogger("cni.bond")


def attachment(
    conf: BondConfig, container_id: str, netns: str, bond: str, env: Mapping[str, str]
) -> records.Attachment:
    namespace, name, uid = records.pod_of(env.get("CNI_ARGS", ""))
    o = conf.options
    return records.Attachment(
        network=conf.name,
        container_id=container_id,
        netns=netns,
        bond=bond,
        slaves=conf.links,
        pod_namespace=namespace,
        pod_name=name,
        pod_uid=uid,
        monitor=records.Monitor(
            mode=o.mode,
            miimon=o.miimon,
            arp_interval=o.arp_interval or 0,
            updelay=o.updelay or 0,
            downdelay=o.downdelay or 0,
        ),
    )


def save(folder: str, record: records.Attachment) -> str:
    """Write `record` atomically into `folder` (made if missing); its path."""
    os.makedirs(folder, mode=0o755, exist_ok=True)
    path = os.path.join(folder, record.key)
    temp = os.path.join(folder, f".{record.key}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o644)
    try:
        try:
            os.write(fd, records.encode(record))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except BaseException:
        _unlink(temp)
        raise
    _sync_folder(folder)
    return path


def remove(folder: str, container_id: str, bond: str) -> bool:
    """Remove the record of (container, bond); False when there was none."""
    try:
        name = records.file_name(container_id, bond)
    except ValueError:
        return False
    if not _unlink(os.path.join(folder, name)):
        return False
    _sync_folder(folder)
    return True


def gc(folder: str, network: str, valid: Iterable[Mapping[str, Any]]) -> list[str]:
    """Remove this network's records whose (containerID, ifname) is not in `valid` (the GC
    config's cni.dev/valid-attachments); the names of the files removed. Other networks' records
    and files that are not records are left alone."""
    keep = set()
    for entry in valid:
        try:
            keep.add(records.file_name(str(entry.get("containerID")), str(entry.get("ifname"))))
        except ValueError:
            continue
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        if name.startswith(".") or not name.endswith(records.SUFFIX) or name in keep:
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as file:
                record = records.decode(file.read(), path)
        except (OSError, ValueError) as exc:
            log.info("GC: %s is not a record I can read, left alone: %s", path, exc)
            continue
        if record.network == network and _unlink(path):
            removed.append(name)
    if removed:
        _sync_folder(folder)
    return removed


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _sync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
