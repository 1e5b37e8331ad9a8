"""The agent's memory and voice: each watched bond's state (for the metrics), and what the cluster
was last told about it (persisted, so a restarted agent does not repeat itself).

The watcher calls update()/forget()/gone() from its thread; a sender thread delivers the pods
whose bonds changed through a Sink (Kubernetes, or a log), coalescing changes that come faster
than it can send and retrying with backoff when the sink fails. What was sent is kept per
attachment in `<records folder>/.agent/<record>`; a change made while the agent was down is
reported once, as the difference from that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cni.agent import health
from cni.core.records import Attachment

log = logging.getLogger("cni.agent")
STATE_FOLDER = ".agent"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Condition:
    status: str  # "True" / "False"
    reason: str
    message: str
    transition: bool  # the status differs from what was last sent (or nothing was)


class PodGone(Exception):
    """The pod no longer exists (or is another pod by now): nothing to tell it."""


class SinkError(Exception):
    """Delivery failed for now; the reporter retries."""


class Sink(Protocol):
    def report(self, pod: PodRef, condition: Condition, events: list[health.Signal]) -> None: ...


@dataclass
class Bond:
    """One watched attachment as the metrics show it."""

    record: Attachment
    state: health.BondState
    failovers: int = 0


class Reporter:
    def __init__(
        self,
        folder: str,
        sink: Sink | None,
        *,
        retry: tuple[float, float] = (1.0, 60.0),
        wait: Callable[[threading.Condition, float], bool] | None = None,
    ) -> None:
        self._state_dir = os.path.join(folder, STATE_FOLDER)
        self._sink = sink
        self._retry = retry
        self._lock = threading.Condition()
        self._bonds: dict[str, Bond] = {}
        self._sent: dict[str, health.Summary | None] = {}
        self._pending: set[str] = set()
        self._pruned = False
        self._wait = wait or (lambda cond, timeout: cond.wait(timeout))

    # -- the watcher's side ------------------------------------------------------------------

    def update(self, key: str, record: Attachment, state: health.BondState) -> None:
        with self._lock:
            old = self._bonds.get(key)
            bond = self._bonds[key] = Bond(record, state, old.failovers if old else 0)
            was = old.state.active if old is not None else None
            if was and state.active and was != state.active:
                bond.failovers += 1
                log.info("%s %s failed over to %s", record.pod, record.bond, state.active)
            if key not in self._sent:
                self._sent[key] = self._load(key)
            if self._sent[key] != state.summary():
                self._pending.add(key)
                self._lock.notify_all()

    def forget(self, key: str) -> None:
        """The record was removed (DEL, GC): no metrics, nothing more to say, no saved state."""
        with self._lock:
            self._bonds.pop(key, None)
            self._sent.pop(key, None)
            self._pending.discard(key)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._state_dir, key))

    def gone(self, key: str) -> None:
        """The netns went away under the record: drop its metrics quietly, send nothing."""
        with self._lock:
            self._bonds.pop(key, None)
            self._pending.discard(key)

    def keep(self, keys: set[str]) -> None:
        """The records there are; on the first call, saved states of other records are removed
        (their records went while the agent was not running)."""
        if self._pruned:
            return
        self._pruned = True
        try:
            names = os.listdir(self._state_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name not in keys:
                with_path = os.path.join(self._state_dir, name)
                try:
                    os.unlink(with_path)
                except OSError as exc:
                    log.warning("cannot remove %s: %s", with_path, exc)

    def bonds(self) -> list[Bond]:
        with self._lock:
            return [Bond(b.record, b.state, b.failovers) for b in self._bonds.values()]

    # -- the sender's side -------------------------------------------------------------------

    def pending(self) -> set[str]:
        with self._lock:
            return set(self._pending)

    def run_sender(self, stop: threading.Event) -> None:
        delay = 0.0
        while not stop.is_set():
            with self._lock:
                if not self._pending or delay:
                    self._wait(self._lock, delay or 1.0)
            if stop.is_set():
                return
            failed = self.send_pending()
            delay = min(max(delay * 2, self._retry[0]), self._retry[1]) if failed else 0.0

    def send_pending(self) -> bool:
        """Deliver every pod with a pending change once; True if any delivery failed."""
        with self._lock:
            pods = {_pod_of(self._bonds[k].record) for k in self._pending if k in self._bonds}
        failed = False
        for pod in pods:
            try:
                self._send_pod(pod)
            except SinkError as exc:
                log.warning("cannot report on pod %s/%s yet: %s", pod.namespace, pod.name, exc)
                failed = True
        return failed

    def _send_pod(self, pod: PodRef) -> None:
        with self._lock:
            keys = sorted(k for k, b in self._bonds.items() if _pod_of(b.record) == pod)
            now = {k: self._bonds[k].state.summary() for k in keys}
            bonds = {k: self._bonds[k].record.bond for k in keys}
            before = {k: self._sent.get(k) for k in keys}
        events = [s for k in keys for s in health.signals(bonds[k], before[k], now[k])]
        condition = _condition(bonds, before, now)
        if pod.name and self._sink is not None:
            try:
                self._sink.report(pod, condition, events)
            except PodGone as exc:
                log.info("pod %s/%s is gone (%s); not reporting", pod.namespace, pod.name, exc)
        for signal in events:
            log.info("%s/%s %s: %s", pod.namespace, pod.name, signal.reason, signal.message)
        with self._lock:
            for key in keys:
                if key in self._bonds and self._bonds[key].state.summary() == now[key]:
                    self._pending.discard(key)
                if key in self._sent:
                    self._sent[key] = now[key]
                    self._save(key, now[key])

    def _load(self, key: str) -> health.Summary | None:
        path = os.path.join(self._state_dir, key)
        try:
            with open(path, encoding="utf-8") as file:
                return health.Summary.from_json(json.load(file))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring saved state %s: %s", path, exc)
            return None

    def _save(self, key: str, summary: health.Summary) -> None:
        os.makedirs(self._state_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self._state_dir, key)
        temp = f"{path}.tmp"
        try:
            with open(temp, "w", encoding="utf-8") as file:
                json.dump(summary.to_json(), file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except OSError as exc:
            log.warning("cannot save %s (a restart may repeat its last events): %s", path, exc)


def _pod_of(record: Attachment) -> PodRef:
    return PodRef(record.pod_namespace, record.pod_name, record.pod_uid)


def _condition(
    bonds: dict[str, str],
    before: dict[str, health.Summary | None],
    now: dict[str, health.Summary],
) -> Condition:
    """One BondHealthy condition for all of a pod's bonds: True when every one is healthy."""
    parts = [health.condition(bonds[k], now[k]) for k in sorted(now)]
    bad = [p for p in parts if p[0] != "True"]
    status = "False" if bad else "True"
    reason = bad[0][1] if bad else "AllSlavesUp"
    message = "; ".join(p[2] for p in (bad or parts))
    was = [s for s in before.values() if s is not None]
    old = None if not was else ("True" if all(s.level == health.HEALTHY for s in was) else "False")
    return Condition(status, reason, message, old != status)
