"""How the doctor reads the cluster: typed client calls answered as plain JSON, and what it found
installed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class DoctorError(RuntimeError):
    """The doctor cannot go on (no API server, no installation to check); exit 2."""


class Reader:
    """The API clients the doctor uses, each call bounded by `timeout` seconds."""

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        self.api = api
        self.timeout = timeout
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)

    def raw(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A typed client call answered as plain JSON (the pure modules take plain dicts)."""
        response = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        return json.loads(response.data)

    def get(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like raw, None when the object does not exist."""
        try:
            return self.raw(method, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


@dataclass(frozen=True)
class Install:
    """The release the doctor checks, found from its MutatingWebhookConfiguration."""

    config: dict[str, Any]  # the MutatingWebhookConfiguration
    webhook: dict[str, Any]  # our entry in it
    release: str
    namespace: str

    @property
    def name(self) -> str:
        return str(self.config["metadata"]["name"])
