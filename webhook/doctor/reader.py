"""How the doctor reads the cluster: plain JSON through the API client, and what it found
installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.kubeapi import ApiError, KubeClient, Resource

NODES = Resource("", "v1", "nodes", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
CONFIG_MAPS = Resource("", "v1", "configmaps")
SERVICES = Resource("", "v1", "services")
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
DAEMON_SETS = Resource("apps", "v1", "daemonsets")
WEBHOOK_CONFIGS = Resource(
    "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", namespaced=False
)


class DoctorError(RuntimeError):
    """The doctor cannot go on (no API server, no installation to check); exit 2."""


class Reader:
    """The API server as the doctor reads it, each call bounded by `timeout` seconds."""

    def __init__(self, api: KubeClient, timeout: float) -> None:
        self.api = api
        self.timeout = timeout

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Any]:
        """The items; all namespaces' when `namespace` is None."""
        found = self.api.list(
            resource,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout=self.timeout,
        )
        return list(found.get("items") or [])

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Any:
        """The object, None when it does not exist."""
        try:
            return self.api.get(resource, name, namespace, timeout=self.timeout)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def dry_run_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        """The pod as admission would store it (the webhooks called), without storing it."""
        return self.api.create(PODS, pod, namespace, dry_run=True, timeout=self.timeout)


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
