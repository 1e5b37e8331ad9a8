"""NetworkAttachmentDefinitions from the API server: list, then watch, kept in memory.

One daemon thread lists all NADs, marks the cache synced, and watches from the list's
resourceVersion; a 410 Gone (the version is too old) relists at once, other failures reconnect
with exponential backoff. A miss on the hot path falls back to one GET.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from webhook.kubeapi import ApiError, KubeClient, Resource, Watch
from webhook.nads import NadError, NadFetchError, NetworkAttachmentDefinition

log = logging.getLogger(__name__)

NADS = Resource("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
_GONE = 410


class WatchExpired(Exception):
    """410 Gone: the watch's resourceVersion is older than the server keeps; relist."""


class KubeNadCache:
    def __init__(
        self,
        api: KubeClient,
        *,
        watch_timeout: int = 300,
        request_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self._api = api
        self._nads: dict[tuple[str, str], NetworkAttachmentDefinition] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None
        self._watch_timeout = watch_timeout
        self._request_timeout = request_timeout
        self._backoff = (backoff_initial, backoff_max)
        self.relists = 0
        self.last_error: str | None = None

    # -- NadSource -------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        return self._nads.get((namespace, name))

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        try:
            obj = self._api.get(NADS, name, namespace, timeout=self._request_timeout)
        except ApiError as exc:
            if exc.status == 404:
                return None
            what = f"reading network-attachment-definition {namespace}/{name}"
            raise NadFetchError(f"{what}: {exc.status} {exc.reason}") from None
        except Exception as exc:  # unreachable, or credentials that cannot be read
            raise NadFetchError(
                f"reading network-attachment-definition {namespace}/{name}: {exc}"
            ) from None
        return NetworkAttachmentDefinition.from_object(obj, namespace)

    def __len__(self) -> int:
        return len(self._nads)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nad-cache", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.close()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            try:
                version = self._list()
                delay = self._backoff[0]
                self._watch_from(version)
            except WatchExpired:
                log.info("NAD watch expired (410 Gone); relisting")
            except Exception as exc:
                if self._stopping.is_set():
                    break  # stop() ended the watch
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("NAD list/watch failed, retrying in %.1fs: %s", delay, self.last_error)
                self._stopping.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def _list(self) -> str:
        listing = self._api.list(NADS, timeout=self._request_timeout)
        fresh: dict[tuple[str, str], NetworkAttachmentDefinition] = {}
        for item in listing.get("items") or []:
            nad = _parse(item)
            if nad is not None:
                fresh[nad.key] = nad
        with self._lock:
            self._nads = fresh  # one swap: readers see the old or the new set, never half
        self.relists += 1
        self.last_error = None
        self._synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _watch_from(self, version: str) -> None:
        while not self._stopping.is_set():
            try:
                self._watch = self._api.watch(
                    NADS,
                    resource_version=version,
                    timeout_seconds=self._watch_timeout,
                    request_timeout=self._watch_timeout + self._request_timeout,
                )
                if self._stopping.is_set():
                    self._watch.close()  # stop() came before there was a watch to close
                    break
                for event in self._watch:
                    version = self._apply(event) or version
            except ApiError as exc:
                if exc.status == _GONE:
                    raise WatchExpired from None
                raise

    def _apply(self, event: dict[str, Any]) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(version) if version else None
        nad = _parse(obj)
        if nad is None:
            return str(version) if version else None
        with self._lock:
            if kind == "DELETED":
                self._nads.pop(nad.key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._nads[nad.key] = nad
        return str(version) if version else None


def _parse(obj: dict[str, Any]) -> NetworkAttachmentDefinition | None:
    try:
        return NetworkAttachmentDefinition.from_object(obj)
    except NadError as exc:
        log.warning("ignoring a NAD: %s", exc)
        return None
