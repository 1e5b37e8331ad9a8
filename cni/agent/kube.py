"""Where the agent's reports go: the Kubernetes API (Events, the pod's BondHealthy condition), or
a stream of JSON lines where there is no API server.

The API is spoken with http.client over TLS rather than the kubernetes package: the agent makes two
kinds of calls (create an Event, patch pods/status) and travels in the CNI bundle, which the
kubernetes client and its dependencies would grow by tens of megabytes. Credentials are the pod's
service account (the token file is read on every call: projected tokens rotate).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
from typing import IO, Any
from urllib.parse import quote, urlsplit

from cni.agent.health import CONDITION, Signal
from cni.agent.report import Condition, PodGone, PodRef, SinkError

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
COMPONENT = "bond-injector-agent"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class KubeSink:
    def __init__(
        self, server: str, token_file: str, ca_file: str | None, node: str, timeout: float = 10.0
    ) -> None:
        parts = urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"API server {server!r} is not an https:// URL")
        self._host, self._port = parts.hostname, parts.port or 443
        self._token_file = token_file
        self._context = ssl.create_default_context(cafile=ca_file)
        self._node = node
        self._timeout = timeout

    @classmethod
    def in_cluster(cls, node: str) -> KubeSink:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError("KUBERNETES_SERVICE_HOST is not set: not running in a pod")
        host = f"[{host}]" if ":" in host else host
        return cls(
            f"https://{host}:{port}",
            f"{SERVICE_ACCOUNT}/token",
            f"{SERVICE_ACCOUNT}/ca.crt",
            node,
        )

    def report(self, pod: PodRef, condition: Condition, events: list[Signal]) -> None:
        """Patch the condition (learning the pod's uid), then create the Events."""
        uid = self._patch_condition(pod, condition)
        for signal in events:
            self._event(pod, uid, signal)

    def _patch_condition(self, pod: PodRef, condition: Condition) -> str:
        entry: dict[str, Any] = {
            "type": CONDITION,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastProbeTime": None,
        }
        if condition.transition:
            entry["lastTransitionTime"] = _now()
        body: dict[str, Any] = {"status": {"conditions": [entry]}}
        if pod.uid:
            body["metadata"] = {"uid": pod.uid}  # the API refuses it for another pod of that name
        path = (
            f"/api/v1/namespaces/{quote(pod.namespace, safe='')}/pods/"
            f"{quote(pod.name, safe='')}/status"
        )
        got = self._call("PATCH", path, body, "application/strategic-merge-patch+json", pod)
        uid = (got.get("metadata") or {}).get("uid")
        if pod.uid and uid != pod.uid:
            raise PodGone(f"the pod's uid is {uid}, the record's {pod.uid}")
        return str(uid or "")

    def _event(self, pod: PodRef, uid: str, signal: Signal) -> None:
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": pod.namespace,
                "name": pod.name,
                "uid": uid,
            },
            "reason": signal.reason,
            "message": signal.message,
            "type": signal.kind,
            "source": {"component": COMPONENT, "host": self._node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        path = f"/api/v1/namespaces/{quote(pod.namespace, safe='')}/events"
        self._call("POST", path, body, "application/json", pod)

    def _call(
        self, method: str, path: str, body: dict[str, Any], content_type: str, pod: PodRef
    ) -> dict[str, Any]:
        try:
            with open(self._token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            raise SinkError(f"cannot read the service account token: {exc}") from exc
        conn = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=self._timeout
        )
        try:
            conn.request(
                method,
                path,
                json.dumps(body),
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": content_type,
                    "Accept": "application/json",
                    "User-Agent": COMPONENT,
                },
            )
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise SinkError(f"{method} {path}: {exc}") from exc
        finally:
            conn.close()
        if response.status in (404, 409) or (response.status == 422 and b"uid" in data.lower()):
            raise PodGone(f"{method} {path}: {response.status} {_reason(data)}")
        if response.status >= 300:
            hint = ""
            # A policy's refusal says itself what is wrong; RBAC's says only "forbidden".
            if response.status in (401, 403) and b"ValidatingAdmissionPolicy" not in data:
                hint = "; the agent's service account needs create on events, patch on pods/status"
            raise SinkError(f"{method} {path}: {response.status} {_reason(data)}{hint}")
        try:
            found = json.loads(data)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


def _reason(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message"))
    except (ValueError, AttributeError):
        return data[:200].decode(errors="replace")


class LogSink:
    """Reports as JSON lines (no API server: a plain runtime, or the kernel tests)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def report(self, pod: PodRef, condition: Condition, events: list[Signal]) -> None:
        where = {"namespace": pod.namespace, "pod": pod.name}
        lines = [{**where, "condition": CONDITION, **vars(condition)}]
        lines += [
            {**where, "event": s.reason, "type": s.kind, "message": s.message} for s in events
        ]
        for line in lines:
            self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()
