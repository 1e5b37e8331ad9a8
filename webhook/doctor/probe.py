"""The doctor's probes of the webhook itself: a TLS handshake verified with the caBundle the API
server uses, and pods admitted in dry-run, so the real path (API server -> webhook) answers."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

from webhook.annotation import NETWORKS_ANNOTATION, AnnotationError, parse_networks
from webhook.doctor import selectors
from webhook.doctor.reader import (
    DAEMON_SETS,
    ENDPOINT_SLICES,
    NAMESPACES,
    SERVICES,
    Install,
    Reader,
)
from webhook.doctor.report import Row, failed, passed, skipped, warned
from webhook.kubeapi import ApiError, Resource
from webhook.mutation import BOND_LABEL, PROFILE_ANNOTATION
from webhook.profiles import Profiles

EXPIRY_WARNING = dt.timedelta(days=30)
_WORKLOADS = (
    ("deployment", Resource("apps", "v1", "deployments")),
    ("replicaset", Resource("apps", "v1", "replicasets")),
    ("statefulset", Resource("apps", "v1", "statefulsets")),
    ("daemonset", DAEMON_SETS),
    ("job", Resource("batch", "v1", "jobs")),
)


def tls_rows(reader: Reader, install: Install) -> list[Row]:
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
    targets = _tls_targets(reader, client_config)
    if isinstance(targets, Row):
        return [targets]
    unreachable: list[str] = []
    for host, port, server_name in targets:
        try:
            peer = _handshake(context, host, port, server_name, reader.timeout)
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
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(peer["notAfter"])), dt.UTC)
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


def _tls_targets(
    reader: Reader, client_config: Mapping[str, Any]
) -> list[tuple[str, int, str]] | Row:
    url = client_config.get("url")
    if url:
        parsed = urllib.parse.urlsplit(str(url))
        host = parsed.hostname or ""
        return [(host, parsed.port or 443, host)]
    service = client_config.get("service") or {}
    ns, name = str(service.get("namespace")), str(service.get("name"))
    port = int(service.get("port") or 443)
    slices = reader.list(ENDPOINT_SLICES, ns, label_selector=f"kubernetes.io/service-name={name}")
    svc = reader.get(SERVICES, name, ns)
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
        chosen = next((p for p in ports if p.get("name") == port_name), ports[0] if ports else None)
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


def admission_rows(reader: Reader, install: Install, profiles: Profiles, ns: str) -> list[Row]:
    """One dry-run create per profile: the API server calls the webhook as for a real pod."""
    namespace = reader.get(NAMESPACES, ns)
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
    return [_dry_run(reader, install, ns, name) for name in sorted(profiles.profiles)]


def _dry_run(reader: Reader, install: Install, ns: str, profile: str) -> Row:
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
        admitted = reader.dry_run_pod(ns, pod)
    except ApiError as exc:
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
        networks = ", ".join(e.describe() for e in parse_networks(annotations[NETWORKS_ANNOTATION]))
    except AnnotationError:
        networks = annotations[NETWORKS_ANNOTATION]
    pools = ", ".join(f"{k}: {v}" for k, v in sorted(requests.items()))
    return passed(
        "admission",
        subject,
        f"the webhook answered through the API server: networks {networks}; requests {pools}",
    )


def replay(reader: Reader, install: Install | None, ns: str, name: str) -> Row | None:
    """The pod template of a workload named `name`, admitted again in dry-run."""
    if install is None:
        return None
    for kind, resource in _WORKLOADS:
        workload = reader.get(resource, name, ns)
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
            admitted = reader.dry_run_pod(ns, pod)
        except ApiError as exc:
            return _admission_failure(subject, install, exc, check="pod")
        has_bond = NETWORKS_ANNOTATION in (
            (admitted.get("metadata") or {}).get("annotations") or {}
        )
        return passed(
            "pod",
            subject,
            "admitted now"
            + (" with the bond" if has_bond else ", without a bond (not in the webhook's scope)"),
        )
    return None


def _admission_failure(
    subject: str, install: Install, exc: ApiError, check: str = "admission"
) -> Row:
    message = exc.message
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


def _handshake(
    context: ssl.SSLContext, host: str, port: int, server_name: str, timeout: float
) -> dict[str, Any]:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        peer: dict[str, Any] = tls.getpeercert() or {}
        return peer
