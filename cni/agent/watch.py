"""The agent's eyes: the records folder, and each recorded bond through its netns' link events.

One thread, one epoll set: the records folder's inotify fd, one inotify watch per netns folder
(`ip netns del` and the runtimes unlink the netns' file there), and per attachment one netlink
socket subscribed to the netns' link notifications. A notification means "read the links again"
(one dump, on a second socket, so no notification is lost in a dump's replies). A rescan on a
slow timer (`rescan`, seconds) backs everything up: with inotify it only catches what inotify
cannot say; without it, it is how records are found.

Memory is bounded by the records: per attachment two sockets and one BondState.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from cni.agent import health, inotify
from cni.agent.report import Reporter
from cni.core import records
from cni.core.errors import CNIError
from cni.kernel.netlink import Netns, link_events

log = logging.getLogger("cni.agent")


@dataclass(eq=False)
class _Watch:
    record: records.Attachment
    signature: tuple[int, int, int]  # the record file's (inode, mtime, size)
    netns_id: tuple[int, int] | None = None  # the netns file's (dev, inode) while watched
    events: socket.socket | None = None
    dumps: Netns | None = None

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        if self.dumps is not None:
            self.dumps.close()
        self.events = self.dumps = None
        self.netns_id = None


class Agent:
    def __init__(self, folder: str, reporter: Reporter, rescan: float = 30.0) -> None:
        self.folder = folder
        self.reporter = reporter
        self.rescan_every = rescan
        self._watches: dict[str, _Watch] = {}
        self._selector = selectors.DefaultSelector()
        self._inotify = inotify.open_inotify()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        if self._inotify is not None:
            self._selector.register(self._inotify, selectors.EVENT_READ, None)

    @property
    def watched(self) -> dict[str, records.Attachment]:
        """Records whose netns is open now, by file name."""
        return {k: w.record for k, w in self._watches.items() if w.events is not None}

    def stop(self) -> None:
        os.write(self._wake_w, b"x")

    def run(self, stop: threading.Event) -> None:
        os.makedirs(self.folder, mode=0o755, exist_ok=True)
        self.rescan()
        next_rescan = time.monotonic() + self.rescan_every
        while not stop.is_set():
            timeout = max(0.0, next_rescan - time.monotonic())
            rescan, changed = False, []
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    rescan = True
                    if key.fileobj is self._inotify:
                        self._inotify.drain()
                    else:
                        _drain_pipe(self._wake_r)
                else:
                    changed.append(key.data)
            # Records first: a DEL removes the record before it deletes the bond.
            if rescan or time.monotonic() >= next_rescan:
                self.rescan()
                next_rescan = time.monotonic() + self.rescan_every
            for name in changed:
                self._changed(name)
        self.close()

    def close(self) -> None:
        for watch in self._watches.values():
            self._unwatch(watch)
        self._watches.clear()
        self._selector.close()
        if self._inotify is not None:
            self._inotify.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def rescan(self) -> None:
        """Pick up new, changed and removed records; drop netns that went away; open those that
        could not be opened before."""
        if self._inotify is not None and not self._inotify.watch(self.folder):
            os.makedirs(self.folder, mode=0o755, exist_ok=True)
            self._inotify.watch(self.folder)
        found = self._listing()
        for key in [k for k in self._watches if k not in found]:
            removed = self._watches.pop(key)
            log.info("record %s removed: stop watching %s %s", key, removed.record.pod, key)
            self._unwatch(removed)
            self.reporter.forget(key)
        for key, signature in found.items():
            watch: _Watch | None = self._watches.get(key)
            if watch is not None and watch.signature != signature:
                self._unwatch(watch)
                watch = None
            if watch is None:
                record = self._read(key)
                if record is None:
                    continue
                watch = self._watches[key] = _Watch(record, signature)
            self._check_netns(key, watch)
        self.reporter.keep(set(self._watches))

    def _listing(self) -> dict[str, tuple[int, int, int]]:
        found = {}
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return {}
        for name in names:
            if name.startswith(".") or not name.endswith(records.SUFFIX):
                continue
            try:
                st = os.stat(os.path.join(self.folder, name))
            except FileNotFoundError:
                continue
            found[name] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return found

    def _read(self, key: str) -> records.Attachment | None:
        path = os.path.join(self.folder, key)
        try:
            with open(path, "rb") as file:
                return records.decode(file.read(), path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("skipping record %s: %s", path, exc)
            return None

    def _check_netns(self, key: str, watch: _Watch) -> None:
        path = watch.record.netns
        try:
            st = os.stat(path)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if watch.events is not None and now == watch.netns_id:
            return
        if watch.events is not None:
            log.info("netns %s of %s is gone: stop watching %s", path, watch.record.pod, key)
            self._unwatch(watch)
            self.reporter.gone(key)
        if now is None:
            return
        if self._inotify is not None:
            self._inotify.watch(os.path.dirname(path), inotify.IN_DELETE | inotify.IN_MOVED_FROM)
        try:
            watch.events = link_events(path)
            watch.dumps = Netns(path)
        except CNIError as exc:
            watch.close()
            log.info("cannot watch %s in %s: %s %s", key, path, exc.msg, exc.details)
            return
        watch.netns_id = now
        self._selector.register(watch.events, selectors.EVENT_READ, key)
        log.info("watching %s %s in %s", watch.record.pod, watch.record.bond, path)
        self._refresh(key, watch)

    def _unwatch(self, watch: _Watch) -> None:
        if watch.events is not None:
            self._selector.unregister(watch.events)
        watch.close()

    def _changed(self, key: str) -> None:
        watch = self._watches.get(key)
        if watch is None or watch.events is None:
            return
        try:
            while watch.events.recv(1 << 16):
                pass
        except BlockingIOError:
            pass
        except OSError as exc:  # ENOBUFS: notifications were lost; the dump below covers them
            log.debug("link events of %s: %s", key, exc)
        self._refresh(key, watch)

    def _refresh(self, key: str, watch: _Watch) -> None:
        assert watch.dumps is not None
        if not os.path.exists(os.path.join(self.folder, key)):
            return  # DEL is tearing it down; the rescan that follows forgets it
        try:
            links = watch.dumps.links()
        except CNIError as exc:
            log.info("cannot read the links of %s: %s %s", key, exc.msg, exc.details)
            return
        self.reporter.update(key, watch.record, health.read(watch.record, links))


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
