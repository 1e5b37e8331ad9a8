"""The Kubernetes edge of the certificate tool: Secrets and the webhook configuration's caBundle.

Two Secrets, so the webhook pods never mount the CA's private key:
- `<secret>` (kubernetes.io/tls): tls.crt, tls.key and ca.crt, mounted by the webhook;
- `<secret>-ca` (kubernetes.io/tls): the CA's tls.crt and tls.key, plus previous-ca.crt while a
  replaced CA is still valid, read only by this tool.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from certs import pki
from webhook.kubeapi import ApiError, KubeClient, Resource

log = logging.getLogger("certs")

MANAGED_BY = {"app.kubernetes.io/managed-by": "bond-injector-certs"}
PREVIOUS_CA_KEY = "previous-ca.crt"
SECRETS = Resource("", "v1", "secrets")
WEBHOOK_CONFIGS = Resource(
    "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", namespaced=False
)


@dataclass(frozen=True)
class Target:
    """Where the certificates live and which webhook configuration trusts them."""

    namespace: str
    secret: str
    webhook_config: str | None = None
    webhooks: tuple[str, ...] = ()  # names inside the configuration; empty means all of them

    @property
    def ca_secret(self) -> str:
        return f"{self.secret}-ca"


@dataclass(frozen=True)
class Policy:
    """What to ask of the certificates."""

    dns_names: tuple[str, ...]
    ips: tuple[str, ...] = ()
    renew_before: dt.timedelta = dt.timedelta(days=30)
    ca_validity: dt.timedelta = dt.timedelta(days=3650)
    serving_validity: dt.timedelta = dt.timedelta(days=365)


@dataclass(frozen=True)
class Outcome:
    verdict: pki.Verdict
    reasons: tuple[str, ...]
    actions: tuple[str, ...] = field(default=())
    ca_bundle: bytes = b""


@dataclass(frozen=True)
class _Stored:
    pair: pki.KeyPair | None
    extra: dict[str, bytes]
    resource_version: str | None  # None: the Secret does not exist


def ensure(
    api: KubeClient,
    target: Target,
    policy: Policy,
    now: dt.datetime,
    *,
    force_serving: bool = False,
    force_ca: bool = False,
) -> Outcome:
    """Make the Secrets hold a healthy pair for `policy` and the webhook trust its CA.

    A healthy Secret is not written (its resourceVersion stays), so re-runs are no-ops. The
    caBundle is patched before the serving Secret changes, so the apiserver already trusts a new
    CA by the time the webhook serves a certificate signed by it.
    """
    stored_ca = _read(api, target.namespace, target.ca_secret)
    stored_serving = _read(api, target.namespace, target.secret)
    assessment = pki.assess(
        stored_ca.pair,
        stored_serving.pair,
        dns_names=policy.dns_names,
        ips=policy.ips,
        now=now,
        renew_before=policy.renew_before,
    )
    verdict, reasons = assessment.verdict, list(assessment.reasons)
    if force_ca and verdict is not pki.Verdict.NEW_CA:
        verdict, reasons = pki.Verdict.NEW_CA, ["a new CA was asked for"]
    elif force_serving and verdict is pki.Verdict.HEALTHY:
        verdict, reasons = pki.Verdict.RENEW_SERVING, ["a new serving certificate was asked for"]
    actions: list[str] = []

    previous_ca = stored_ca.extra.get(PREVIOUS_CA_KEY)
    if verdict is pki.Verdict.NEW_CA or stored_ca.pair is None:
        if stored_ca.pair is not None and not pki.assess_ca(stored_ca.pair, now, dt.timedelta(0)):
            previous_ca = stored_ca.pair.cert_pem  # still valid: keep trusting it for a while
        ca = pki.generate_ca(f"bond-injector-ca.{target.namespace}", now, policy.ca_validity)
        extra = {PREVIOUS_CA_KEY: previous_ca} if previous_ca else {}
        _write(
            api,
            target.namespace,
            target.ca_secret,
            ca,
            extra=extra,
            resource_version=stored_ca.resource_version,
        )
        actions.append(f"wrote CA secret {target.namespace}/{target.ca_secret}")
    else:
        ca = stored_ca.pair

    bundle = pki.ca_bundle(ca.cert_pem, previous_ca, now=now)
    if target.webhook_config and patch_ca_bundle(
        api, target.webhook_config, bundle, target.webhooks
    ):
        actions.append(f"patched caBundle of mutatingwebhookconfiguration {target.webhook_config}")

    stale_ca_crt = stored_serving.extra.get("ca.crt") != ca.cert_pem
    if verdict is not pki.Verdict.HEALTHY or stored_serving.pair is None:
        serving = pki.generate_serving(
            ca, policy.dns_names, policy.ips, now, policy.serving_validity
        )
    elif stale_ca_crt:
        serving = stored_serving.pair
        reasons.append("the serving secret's ca.crt is not the current CA")
    else:
        return Outcome(verdict, tuple(reasons), tuple(actions), bundle)
    _write(
        api,
        target.namespace,
        target.secret,
        serving,
        extra={"ca.crt": ca.cert_pem},
        resource_version=stored_serving.resource_version,
    )
    actions.append(f"wrote serving secret {target.namespace}/{target.secret}")
    return Outcome(verdict, tuple(reasons), tuple(actions), bundle)


def patch_ca_bundle(
    api: KubeClient, name: str, bundle: bytes, webhooks: Sequence[str] = ()
) -> bool:
    """Set caBundle on the named webhooks (all when none are named). False when nothing changed."""
    current = api.get(WEBHOOK_CONFIGS, name).get("webhooks") or []
    encoded = base64.b64encode(bundle).decode()
    known = [str(w.get("name")) for w in current]
    unknown = sorted(set(webhooks) - set(known))
    if unknown:
        raise LookupError(
            f"mutatingwebhookconfiguration {name} has no webhook named {', '.join(unknown)}; "
            f"it has {', '.join(known) or 'none'}"
        )
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(current):
        if webhooks and webhook.get("name") not in webhooks:
            continue
        if (webhook.get("clientConfig") or {}).get("caBundle") == encoded:
            continue
        # The test op fails the patch, rather than hit another webhook, if the list was reordered.
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")})
        ops.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        )
    if not ops:
        return False
    api.patch(WEBHOOK_CONFIGS, name, ops, patch_type="json")
    return True


def _read(api: KubeClient, namespace: str, name: str) -> _Stored:
    try:
        secret = api.get(SECRETS, name, namespace)
    except ApiError as exc:
        if exc.status == 404:
            return _Stored(None, {}, None)
        raise
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    cert, key = data.pop("tls.crt", None), data.pop("tls.key", None)
    pair = pki.KeyPair(cert, key) if cert and key else None
    return _Stored(pair, data, str((secret.get("metadata") or {}).get("resourceVersion") or ""))


def _write(
    api: KubeClient,
    namespace: str,
    name: str,
    pair: pki.KeyPair,
    *,
    extra: dict[str, bytes],
    resource_version: str | None,
) -> None:
    data = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, **extra}
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": MANAGED_BY}
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    if resource_version is None:
        api.create(SECRETS, body, namespace)
    else:
        # With resourceVersion this is a compare-and-swap: a concurrent writer fails it.
        metadata["resourceVersion"] = resource_version
        api.replace(SECRETS, name, body, namespace)
    log.info("wrote secret %s/%s (keys: %s)", namespace, name, ", ".join(sorted(data)))
