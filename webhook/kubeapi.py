"""The Kubernetes API as bond-injector speaks it: JSON over HTTPS with http.client and ssl.

GET, LIST and WATCH (resourceVersion, bookmarks; a watch's 410 Gone is an ApiError with status
410, so the caller relists), POST, PUT and PATCH (merge, strategic merge, JSON patch). Objects
are plain dicts. Errors carry the HTTP status and the API server's own message. Connections
are kept alive in a small pool, one per concurrent request, so the webhook's NAD GETs on a miss
can run side by side; a watch has a connection of its own, which `Watch.close()` shuts from
another thread.

Why not a library. Measured on 2026-12-01 (Python 3.11, load average 3), each on top of the
webhook's own imports (starlette, uvicorn, uvloop, PyYAML, orjson, prometheus_client,
cryptography; 41.2 MiB), importing the client and building one from a kubeconfig:

| client | import + client | VmRSS added | modules added |
|---|---|---|---|
| kubernetes 37.0.2 (what we used) | 1.1-2.1 s | 44.4 MiB | 637 |
| lightkube 1.0.1 (httpx2, httpcore2, msgspec, models) | 0.12-0.16 s | 10.8 MiB | 179 |
| http.client + ssl (this module) | 3-7 ms | 0.9 MiB (the TLS context) | 0 |

The webhook's memory target is 1.5x the injector's 37 MiB, about 55 MiB per worker; with the
kubernetes client a worker took 73 MiB, and lightkube's 10.8 MiB would still leave it near
65 MiB. The API surface bond-injector needs is small (one CRD's list and watch, Secrets, one
webhook configuration, the doctor's reads), so it is written here; tests in
tests/webhook/test_kubeapi_cluster.py hold it to a real kube-apiserver, with kubectl as the
independent client.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import orjson

from webhook.kubeconfig import SERVICE_ACCOUNT_DIR, ClusterAccess, in_cluster, load_kubeconfig

USER_AGENT = "bond-injector"
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
PatchType = Literal["merge", "strategic", "json"]
_MAX_IDLE = 4  # connections kept open between requests
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class ApiError(Exception):
    """The API server answered with an error status (or a watch sent an ERROR event)."""

    def __init__(self, method: str, path: str, status: int, reason: str, body: str) -> None:
        self.method, self.path = method, path
        self.status, self.reason, self.body = status, reason, body
        self.message = _message(body) or reason
        super().__init__(f"{method} {path}: {status} {reason}: {self.message}")


class ApiUnreachable(ConnectionError):
    """No answer from the API server: refused, reset, timed out, or TLS failed."""


def connect(
    kubeconfig: Path | None,
    context: str | None = None,
    *,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeClient:
    """A client from a kubeconfig file, else from the pod's service account (in-cluster)."""
    if kubeconfig is not None:
        return KubeClient(load_kubeconfig(kubeconfig, context))
    return KubeClient(in_cluster(service_account_dir, environ))


@dataclass(frozen=True)
class Resource:
    """One kind of object, as the API's paths name it."""

    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            root += f"/namespaces/{quote(namespace, safe='')}"
        root += f"/{self.plural}"
        return root + (f"/{quote(name, safe='')}" if name is not None else "")


class KubeClient:
    """Requests to one API server; safe to share between threads."""

    def __init__(self, access: ClusterAccess, timeout: float = 30.0) -> None:
        self.access = access
        self.timeout = timeout
        parts = urlsplit(access.server)
        self._host, self._https = str(parts.hostname), parts.scheme == "https"
        self._port = parts.port or (443 if self._https else 80)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # -- verbs ---------------------------------------------------------------------------------

    def get(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return self.request("GET", resource.path(namespace, name), timeout=timeout)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The whole list object: `items`, and `metadata.resourceVersion` to watch from."""
        query = {"labelSelector": label_selector, "fieldSelector": field_selector}
        return self.request("GET", resource.path(namespace), query=query, timeout=timeout)

    def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        query = {"dryRun": "All" if dry_run else None}
        path = resource.path(namespace)
        return self.request("POST", path, query=query, body=body, timeout=timeout)

    def replace(
        self, resource: Resource, name: str, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """PUT: with metadata.resourceVersion in `body`, a compare-and-swap (409 if it moved)."""
        return self.request("PUT", resource.path(namespace, name), body=body)

    def patch(
        self,
        resource: Resource,
        name: str,
        body: Any,
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
    ) -> dict[str, Any]:
        path = resource.path(namespace, name)
        return self.request("PATCH", path, body=body, content_type=PATCH_TYPES[patch_type])

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        request_timeout: float | None = None,
    ) -> Watch:
        """Events after `resource_version` until the server ends the watch (`timeout_seconds`).

        Bookmarks are asked for, so a quiet watch still moves its resourceVersion on."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        path = resource.path(namespace)
        timeout = request_timeout if request_timeout is not None else timeout_seconds + self.timeout
        headers = self._headers(None)
        conn = self._new_connection(timeout)
        try:
            conn.request("GET", path + "?" + urlencode(query), None, headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiUnreachable(f"GET {self.access.server}{path}: {exc}") from None
        if response.status != 200:
            data = response.read()
            conn.close()
            raise ApiError(
                "WATCH", path, response.status, response.reason, data.decode(errors="replace")
            )
        return Watch(conn, response, path)

    # -- the transport -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | None] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One call; the answer's JSON object. Raises ApiError (status >= 400), ApiUnreachable."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urlencode(params) if params else "")
        payload = None if body is None else orjson.dumps(body)
        timeout = self.timeout if timeout is None else timeout
        headers = self._headers(content_type if payload is not None else None)
        for attempt in (1, 2):
            conn, reused = self._take(timeout)
            try:
                conn.request(method, target, payload, headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle connection: once more on a new one
                raise ApiUnreachable(f"{method} {self.access.server}{path}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ApiUnreachable(f"{method} {self.access.server}{path}: {exc}") from None
            self._give_back(conn, response)
            break
        if response.status >= 400:
            body_text = data.decode(errors="replace")
            raise ApiError(method, path, response.status, response.reason, body_text)
        found = orjson.loads(data) if data else {}
        return found if isinstance(found, dict) else {}

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        authorization = self.access.authorization()  # a token file is read again each time
        if authorization:
            headers["Authorization"] = authorization
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.sock is not None and not _readable(conn.sock):
                    conn.sock.settimeout(timeout)
                    return conn, True
                conn.close()  # readable while idle: the server closed it
        return self._new_connection(timeout), False

    def _give_back(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        if response.will_close:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return _TlsConnection(self._host, self._port, self.access, timeout)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Watch:
    """One watch's events, as dicts with `type` (ADDED, MODIFIED, DELETED, BOOKMARK) and
    `object`. An ERROR event (410 Gone: the resourceVersion is too old) raises ApiError."""

    def __init__(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, path: str
    ) -> None:
        self._conn, self._response, self._path = conn, response, path
        self._reading = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._reading = True
        try:
            while line := self._response.readline():
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(
                        "WATCH", self._path, int(status.get("code") or 500),
                        str(status.get("reason") or "Error"), line.decode(errors="replace"),
                    )  # fmt: skip
                yield event
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: bad JSON
            raise ApiUnreachable(f"WATCH {self._path}: {exc}") from None
        finally:
            self._conn.close()

    def close(self) -> None:
        """End the watch now, from any thread: a reader sees the stream end."""
        sock = self._conn.sock
        if sock is not None:
            # The plain socket's shutdown, under TLS too: SSLSocket.shutdown would drop the TLS
            # state that a reader in another thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        if not self._reading:
            self._conn.close()


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS to the API server, verifying `tls-server-name` when the kubeconfig gives one."""

    def __init__(self, host: str, port: int, access: ClusterAccess, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=access.tls)
        self._server_name = access.server_name or host
        self._tls = access.tls

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # the TCP connection, then TLS over it
        assert self._tls is not None
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_name)


def _readable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _message(body: str) -> str:
    """The API server's Status message, else the start of the body."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.strip()[:300]
    if isinstance(found, dict):
        inner = found.get("object") if found.get("type") == "ERROR" else found
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return body.strip()[:300]
