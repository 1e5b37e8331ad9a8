"""Linux inotify through ctypes: tells the agent that a folder changed, nothing more.

The agent rescans the folder on any event (a rescan of a few hundred names is cheap), so event
records are read and dropped rather than decoded. Where inotify cannot be had (no libc symbol,
no instances left) `open()` returns None and the agent rescans on its slow timer alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_CLOSE_WRITE, IN_DELETE_SELF, IN_MOVE_SELF = 0x8, 0x400, 0x800
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
FOLDER_CHANGES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE
FOLDER_CHANGES |= IN_DELETE_SELF | IN_MOVE_SELF

log = logging.getLogger("cni.agent")


class Inotify:
    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self._libc = libc
        self._watched: set[str] = set()

    def fileno(self) -> int:
        return self.fd

    def watch(self, folder: str, mask: int = FOLDER_CHANGES) -> bool:
        """Watch `folder` (once); False when it cannot be watched (then rely on rescans)."""
        if folder in self._watched:
            return True
        if self._libc.inotify_add_watch(self.fd, os.fsencode(folder), mask) < 0:
            err = ctypes.get_errno()
            log.info("cannot watch %s with inotify: %s", folder, os.strerror(err))
            return False
        self._watched.add(folder)
        return True

    def forget(self, folder: str) -> None:
        """Watch `folder` again on the next watch() (it was removed and may come back)."""
        self._watched.discard(folder)

    def drain(self) -> bool:
        """Read every pending event; True if there was any."""
        seen = False
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            if not chunk:
                return seen
            seen = True

    def close(self) -> None:
        os.close(self.fd)


def open_inotify() -> Inotify | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    except (OSError, AttributeError) as exc:
        log.warning("no inotify (%s): rescanning on the timer only", exc)
        return None
    if fd < 0:
        log.warning(
            "no inotify (%s): rescanning on the timer only", os.strerror(ctypes.get_errno())
        )
        return None
    return Inotify(fd, libc)
