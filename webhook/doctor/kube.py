"""The doctor's edge: read the cluster through the API server, shake hands with the webhook over
TLS with the caBundle the API server uses, and ask the API server to admit a pod in dry-run (so
the real path, API server -> webhook, answers). The decisions are in the pure modules beside."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certs.kube import api_client
from webhook.annotation import NETWORKS_ANNOTATION, AnnotationError, parse_networks
from webhook.doctor import checks, podwhy, selectors, sriovdp
from webhook.doctor.report import Row, failed, passed, skipped, warned
from webhook.mutation import BOND_LABEL, PROFILE_ANNOTATION
from webhook.nadcache import KubeNadCache
from webhook.nads import NadFetchError, NetworkAttachmentDefinition
from webhook.profiles import ProfileError, Profiles, parse_profiles

PART_OF = "app.kubernetes.io/part-of=bond-injector"
WEBHOOK_NAME = "pods.bond-injector.io"
PROFILES_KEY = "profiles.yaml"
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"
EXPIRY_WARNING = dt.timedelta(days=30)
_WORKLOADS = (
    ("deployment", "apps", "read_namespaced_deployment"),
    ("replicaset", "apps", "read_namespaced_replica_set"),
    ("statefulset", "apps", "read_namespaced_stateful_set"),
    ("daemonset", "apps", "read_namespaced_daemon_set"),
    ("job", "batch", "read_namespaced_job"),
)


class DoctorError(RuntimeError):
    """The doctor cannot go on (no API server, no installation to check); exit 2."""


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None
    namespace: str = "default"
    pod: str | None = None
    webhook_config: str | None = None
    profiles_file: Path | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class _Install:
    config: dict[str, Any]  # the MutatingWebhookConfiguration
    webhook: dict[str, Any]  # our entry in it
    release: str
    namespace: str

    @property
    def name(self) -> str:
        return str(self.config["metadata"]["name"])


def run(options: Options) -> list[Row]:
    """Every check, in the order a bonded pod meets the chain; with `pod`, that pod's row last."""
    with api_client(options.kubeconfig) as api:
        return _Doctor(api, options).run()


class _Doctor:
    def __init__(self, api: client.ApiClient, options: Options) -> None:
        self.api = api
        self.options = options
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.nad_source = KubeNadCache(api, request_timeout=options.timeout)
        self.nads: dict[tuple[str, str], NetworkAttachmentDefinition | None] = {}

    def _raw(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A typed client call answered as plain JSON (the pure modules take plain dicts)."""
        response = method(
            *args, _preload_content=False, _request_timeout=self.options.timeout, **kwargs
        )
        return json.loads(response.data)

    def _get(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like _raw, None when the object does not exist."""
        try:
            return self._raw(method, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def lookup(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        key = (namespace, name)
        if key not in self.nads:
            try:
                self.nads[key] = self.nad_source.fetch(namespace, name)
            except NadFetchError as exc:
                raise DoctorError(str(exc)) from None
        return self.nads[key]

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> list[Row]:
        rows: list[Row] = []
        install = self._install(rows)
        profiles = self._profiles(install, rows)
        usable: list[checks.ProfilePools] = []
        if profiles is not None:
            profile_rows, usable = checks.profile_rows(
                profiles, self.options.namespace, self.lookup
            )
            rows += profile_rows
        rows += checks.device_plugin_rows(self._device_plugin_configs(), usable)
        nodes = self._raw(self.core.list_node)["items"]
        rows += checks.node_rows(nodes, usable)
        pool_nodes = sorted({n for p in usable for n in checks.nodes_with_pools(nodes, p.pools)})
        if install is not None:
            rows += self._daemonset(install, pool_nodes)
            rows += self._tls(install)
            if profiles is not None:
                rows += self._admission(install, profiles)
        if self.options.pod is not None:
            rows += self._pod(install, profiles or Profiles({}))
        return rows

    def _install(self, rows: list[Row]) -> _Install | None:
        if self.options.webhook_config:
            config = self._get(
                self.admission.read_mutating_webhook_configuration, self.options.webhook_config
            )
            found = [config] if config else []
        else:
            found = self._raw(
                self.admission.list_mutating_webhook_configuration, label_selector=PART_OF
            )["items"]
        if len(found) != 1:
            what = (
                f"mutatingwebhookconfiguration {self.options.webhook_config} does not exist"
                if self.options.webhook_config
                else f"{len(found)} MutatingWebhookConfigurations labelled {PART_OF}"
                + (f" ({', '.join(c['metadata']['name'] for c in found)})" if found else "")
            )
            rows.append(
                failed(
                    "webhook-config",
                    "bond-injector",
                    f"{what}; bonded pods need exactly one installed webhook",
                    "helm install bond-injector charts/bond-injector -n bond-injector "
                    "--create-namespace (one release per cluster), or name yours with "
                    "--webhook-config",
                )
            )
            return None
        config = found[0]
        webhooks = config.get("webhooks") or []
        webhook = next((w for w in webhooks if w.get("name") == WEBHOOK_NAME), None)
        if webhook is None and webhooks:
            webhook = webhooks[0]
        meta = config["metadata"]
        subject = f"mutatingwebhookconfiguration {meta['name']}"
        if webhook is None:
            rows.append(failed("webhook-config", subject, "it has no webhooks", "helm upgrade"))
            return None
        service = (webhook.get("clientConfig") or {}).get("service") or {}
        namespace = (meta.get("annotations") or {}).get(
            RELEASE_NAMESPACE_ANNOTATION
        ) or service.get("namespace", "")
        release = (meta.get("labels") or {}).get("app.kubernetes.io/instance", meta["name"])
        target = (webhook.get("clientConfig") or {}).get("url") or (
            f"service {service.get('namespace')}/{service.get('name')}:{service.get('port', 443)}"
        )
        rows.append(
            passed(
                "webhook-config",
                subject,
                f"release {release} in namespace {namespace}; calls {target} "
                f"(failurePolicy {webhook.get('failurePolicy')})",
            )
        )
        return _Install(config, webhook, release, namespace)

    def _profiles(self, install: _Install | None, rows: list[Row]) -> Profiles | None:
        if self.options.profiles_file is not None:
            source = str(self.options.profiles_file)
            try:
                text = self.options.profiles_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise DoctorError(f"{source}: {exc.strerror}") from None
        elif install is None:
            return None
        else:
            selector = (
                f"app.kubernetes.io/instance={install.release},app.kubernetes.io/component=webhook"
            )
            maps = self._raw(
                self.core.list_namespaced_config_map, install.namespace, label_selector=selector
            )["items"]
            found = [m for m in maps if PROFILES_KEY in (m.get("data") or {})]
            if not found:
                rows.append(
                    failed(
                        "profiles",
                        f"namespace {install.namespace}",
                        f"no ConfigMap labelled {selector} with {PROFILES_KEY}",
                        "helm upgrade the release, or pass the profiles with --profiles FILE",
                    )
                )
                return None
            source = f"configmap {install.namespace}/{found[0]['metadata']['name']}"
            text = found[0]["data"][PROFILES_KEY]
        try:
            profiles = parse_profiles(text, source)
        except ProfileError as exc:
            rows.append(
                failed(
                    "profiles",
                    source,
                    str(exc),
                    "fix `profiles` in the chart's values; the webhook keeps the last good ones",
                )
            )
            return None
        names = ", ".join(sorted(profiles.profiles))
        rows.append(passed("profiles", source, f"profiles: {names}"))
        return profiles

    def _device_plugin_configs(self) -> dict[str, str]:
        maps = self._raw(
            self.core.list_config_map_for_all_namespaces,
            field_selector=f"metadata.name={sriovdp.CONFIGMAP}",
        )["items"]
        return {
            f"{m['metadata']['namespace']}/{m['metadata']['name']}": (m.get("data") or {}).get(
                sriovdp.CONFIG_KEY, ""
            )
            for m in maps
        }

    def _daemonset(self, install: _Install, pool_nodes: list[str]) -> list[Row]:
        selector = (
            f"app.kubernetes.io/instance={install.release},"
            "app.kubernetes.io/component=cni-installer"
        )
        found = self._raw(self.apps.list_daemon_set_for_all_namespaces, label_selector=selector)[
            "items"
        ]
        if not found:
            return checks.daemonset_rows(None, [], pool_nodes)
        daemonset = found[0]
        match = (daemonset.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
        pods = self._raw(
            self.core.list_namespaced_pod,
            daemonset["metadata"]["namespace"],
            label_selector=",".join(f"{k}={v}" for k, v in sorted(match.items())),
        )["items"]
        return checks.daemonset_rows(daemonset, pods, pool_nodes)

    # -- the webhook itself ------------------------------------------------------------------

    def _tls(self, install: _Install) -> list[Row]:
        """A handshake verified with the caBundle, to where the API server would connect."""
        client_config = install.webhook.get("clientConfig") or {}
        subject = f"mutatingwebhookconfiguration {install.name}: caBundle"
        bundle_b64 = client_config.get("caBundle") or ""
        certgen = f"{install.name[:48].rstrip('-')}-certgen"
        fix = (
            f"builtin certificates: kubectl -n {install.namespace} create job "
            f"--from=cronjob/{certgen} renew-now (runs `bond-injector certs ensure "
            f"--webhook-config {install.name}`), or helm upgrade; certManager: check "
            "cert-manager's cainjector; external: set certificates.external.caBundle to the CA "
            "that signed the webhook's certificate"
        )
        if not bundle_b64:
            return [
                failed(
                    "webhook-tls",
                    subject,
                    "caBundle is empty, so the API server cannot verify the webhook",
                    fix,
                )
            ]
        try:
            context = ssl.create_default_context(cadata=base64.b64decode(bundle_b64).decode())
        except (ValueError, ssl.SSLError) as exc:
            return [failed("webhook-tls", subject, f"caBundle is not a PEM CA bundle: {exc}", fix)]
        targets = self._tls_targets(client_config)
        if isinstance(targets, Row):
            return [targets]
        unreachable: list[str] = []
        for host, port, server_name in targets:
            try:
                peer = _handshake(context, host, port, server_name, self.options.timeout)
            except ssl.SSLCertVerificationError as exc:
                return [
                    failed(
                        "webhook-tls",
                        subject,
                        f"the webhook at {host}:{port} serves a certificate the caBundle does not "
                        f"verify ({exc.verify_message}): the API server refuses to call it",
                        fix,
                    )
                ]
            except (OSError, ssl.SSLError) as exc:
                unreachable.append(f"{host}:{port} ({exc})")
                continue
            expires = dt.datetime.fromtimestamp(
                ssl.cert_time_to_seconds(str(peer["notAfter"])), dt.UTC
            )
            left = expires - dt.datetime.now(dt.UTC)
            text = (
                f"handshake with {server_name} at {host}:{port} verified by the caBundle; the "
                f"certificate expires {expires:%Y-%m-%d} ({left.days} days)"
            )
            if left < EXPIRY_WARNING:
                return [warned("webhook-tls", subject, text, fix)]
            return [passed("webhook-tls", subject, text)]
        return [
            warned(
                "webhook-tls",
                subject,
                f"could not reach the webhook from here: {'; '.join(unreachable)}",
                "run the doctor where the webhook's pods are reachable (a node, or a pod in the "
                "cluster); the admission row below still checks the API server's own path",
            )
        ]

    def _tls_targets(self, client_config: Mapping[str, Any]) -> list[tuple[str, int, str]] | Row:
        url = client_config.get("url")
        if url:
            parsed = urllib.parse.urlsplit(str(url))
            host = parsed.hostname or ""
            return [(host, parsed.port or 443, host)]
        service = client_config.get("service") or {}
        ns, name = str(service.get("namespace")), str(service.get("name"))
        port = int(service.get("port") or 443)
        slices = self._raw(
            client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice,
            ns,
            label_selector=f"kubernetes.io/service-name={name}",
        )["items"]
        svc = self._get(self.core.read_namespaced_service, name, ns)
        port_name = next(
            (
                p.get("name")
                for p in (svc or {}).get("spec", {}).get("ports") or []
                if int(p.get("port", 0)) == port
            ),
            None,
        )
        targets: list[tuple[str, int, str]] = []
        for endpoint_slice in slices:
            ports = endpoint_slice.get("ports") or []
            chosen = next(
                (p for p in ports if p.get("name") == port_name), ports[0] if ports else None
            )
            if chosen is None:
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                targets += [
                    (address, int(chosen["port"]), f"{name}.{ns}.svc")
                    for address in endpoint.get("addresses") or []
                ]
        if not targets:
            return failed(
                "webhook-tls",
                f"service {ns}/{name}",
                "the webhook's Service has no ready endpoints: no webhook pod is ready, so "
                "admission of labelled pods fails",
                f"kubectl -n {ns} get pods,events; kubectl -n {ns} logs deploy/{name}",
            )
        return targets

    def _admission(self, install: _Install, profiles: Profiles) -> list[Row]:
        """One dry-run create per profile: the API server calls the webhook as for a real pod."""
        ns = self.options.namespace
        namespace = self._get(self.core.read_namespace, ns)
        if namespace is None:
            return [
                warned(
                    "admission",
                    f"namespace {ns}",
                    f"namespace {ns} does not exist, so no dry-run admission was tried",
                    "pass --namespace with the namespace your bonded pods run in",
                )
            ]
        labels = (namespace.get("metadata") or {}).get("labels") or {}
        unmet = selectors.unmet(install.webhook.get("namespaceSelector"), labels)
        if unmet:
            return [
                skipped(
                    "admission",
                    f"namespace {ns}",
                    f"pods of namespace {ns} are not sent to the webhook ({', '.join(unmet)}), so "
                    "no dry-run admission was tried; pass --namespace with one where bonded "
                    "pods run",
                )
            ]
        return [self._dry_run(install, ns, name) for name in sorted(profiles.profiles)]

    def _dry_run(self, install: _Install, ns: str, profile: str) -> Row:
        subject = f"profile {profile}: dry-run pod in {ns}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"bond-injector-doctor-{secrets.token_hex(3)}",
                "labels": {BOND_LABEL: "true"},
                "annotations": {PROFILE_ANNOTATION: profile},
            },
            "spec": {"containers": [{"name": "probe", "image": "bond-injector-doctor"}]},
        }
        try:
            admitted = self._raw(self.core.create_namespaced_pod, ns, pod, dry_run="All")
        except ApiException as exc:
            return _admission_failure(subject, install, exc)
        annotations = admitted["metadata"].get("annotations") or {}
        if NETWORKS_ANNOTATION not in annotations:
            return failed(
                "admission",
                subject,
                "admitted without the networks annotation: the webhook was not called for it "
                "(check its objectSelector, and failurePolicy "
                f"{install.webhook.get('failurePolicy')})",
                "compare the webhook configuration's selectors with the pod's labels",
            )
        requests = admitted["spec"]["containers"][0].get("resources", {}).get("requests", {})
        try:
            networks = ", ".join(
                e.describe() for e in parse_networks(annotations[NETWORKS_ANNOTATION])
            )
        except AnnotationError:
            networks = annotations[NETWORKS_ANNOTATION]
        pools = ", ".join(f"{k}: {v}" for k, v in sorted(requests.items()))
        return passed(
            "admission",
            subject,
            f"the webhook answered through the API server: networks {networks}; requests {pools}",
        )

    # -- one pod -----------------------------------------------------------------------------

    def _pod(self, install: _Install | None, profiles: Profiles) -> list[Row]:
        ns, name = self.options.namespace, str(self.options.pod)
        pod = self._get(self.core.read_namespaced_pod, name, ns)
        # The pod's own events; for a pod that is not there, its controller's refusals.
        selector = f"involvedObject.name={name}" if pod else "reason=FailedCreate"
        events = self._raw(self.core.list_namespaced_event, ns, field_selector=selector)["items"]
        webhook = install.webhook if install else None
        if pod is not None:
            namespace = self._get(self.core.read_namespace, ns) or {}
            return podwhy.pod_rows(pod, namespace, webhook, profiles, events)
        rows = podwhy.denial_rows(ns, name, events)
        replay = self._replay(install, ns, name)
        if replay is not None:
            rows.append(replay)
        if not rows:
            rows.append(
                failed(
                    "pod",
                    f"pod {ns}/{name}",
                    f"no pod {name} in namespace {ns}, no workload of that name and no denial "
                    "event for it",
                    "check the name and --namespace (kubectl get pods -n NS)",
                )
            )
        return rows

    def _replay(self, install: _Install | None, ns: str, name: str) -> Row | None:
        """The pod template of a workload named `name`, admitted again in dry-run."""
        if install is None:
            return None
        for kind, group, reader in _WORKLOADS:
            api = self.apps if group == "apps" else client.BatchV1Api(self.api)
            workload = self._get(getattr(api, reader), name, ns)
            if workload is None:
                continue
            template = (workload.get("spec") or {}).get("template") or {}
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **(template.get("metadata") or {}),
                    "name": f"{name}-doctor-{secrets.token_hex(3)}",
                },
                "spec": template.get("spec") or {},
            }
            subject = f"{kind} {ns}/{name}: its pod template, admitted again in dry-run"
            try:
                admitted = self._raw(self.core.create_namespaced_pod, ns, pod, dry_run="All")
            except ApiException as exc:
                return _admission_failure(subject, install, exc, check="pod")
            has_bond = NETWORKS_ANNOTATION in (
                (admitted.get("metadata") or {}).get("annotations") or {}
            )
            return passed(
                "pod",
                subject,
                "admitted now"
                + (
                    " with the bond"
                    if has_bond
                    else ", without a bond (not in the webhook's scope)"
                ),
            )
        return None


def _admission_failure(
    subject: str, install: _Install, exc: ApiException, check: str = "admission"
) -> Row:
    message = _api_message(exc)
    if "denied the request" in message:
        return failed(
            check,
            subject,
            f"denied: {message}",
            "fix what the denial names (object, field, fix); the other rows point at it too",
        )
    if "failed calling webhook" in message:
        return failed(
            check,
            subject,
            f"the API server could not call the webhook: {message}",
            "x509 errors: the caBundle is stale (see the webhook-tls row); connection errors: "
            f"the webhook is down or unreachable from the API server (url or service of "
            f"mutatingwebhookconfiguration {install.name})",
        )
    return warned(
        check,
        subject,
        f"the API server refused the dry-run pod before or besides the webhook: {message}",
        "see the message; e.g. the namespace's default ServiceAccount must exist",
    )


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


def _handshake(
    context: ssl.SSLContext, host: str, port: int, server_name: str, timeout: float
) -> dict[str, Any]:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        peer: dict[str, Any] = tls.getpeercert() or {}
        return peer
