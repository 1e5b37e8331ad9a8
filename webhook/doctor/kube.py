"""The doctor's edge: find the installation, read what the checks need through the API server,
and run the checks in the order a bonded pod meets the chain. The decisions are in the pure
modules beside; the webhook's own probes are in `probe`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webhook.doctor import checks, nodes, podwhy, probe, sriovdp
from webhook.doctor.reader import (
    CONFIG_MAPS,
    DAEMON_SETS,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    WEBHOOK_CONFIGS,
    DoctorError,
    Install,
    Reader,
)
from webhook.doctor.report import Row, failed, passed
from webhook.kubeapi import KubeClient, connect
from webhook.nadcache import KubeNadCache
from webhook.nads import NadFetchError, NetworkAttachmentDefinition
from webhook.profiles import ProfileError, Profiles, parse_profiles

__all__ = ["DoctorError", "Options", "run"]

PART_OF = "app.kubernetes.io/part-of=bond-injector"
WEBHOOK_NAME = "pods.bond-injector.io"
PROFILES_KEY = "profiles.yaml"
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"


@dataclass(frozen=True)
class Options:
    kubeconfig: Path | None
    namespace: str = "default"
    pod: str | None = None
    webhook_config: str | None = None
    profiles_file: Path | None = None
    timeout: float = 5.0


def run(options: Options) -> list[Row]:
    """Every check, in the order a bonded pod meets the chain; with `pod`, that pod's row last."""
    with connect(options.kubeconfig) as api:
        return _Doctor(api, options).run()


class _Doctor:
    def __init__(self, api: KubeClient, options: Options) -> None:
        self.reader = Reader(api, options.timeout)
        self.options = options
        self.nad_source = KubeNadCache(api, request_timeout=options.timeout)
        self.nads: dict[tuple[str, str], NetworkAttachmentDefinition | None] = {}

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
        rows += nodes.device_plugin_rows(self._device_plugin_configs(), usable)
        all_nodes = self.reader.list(NODES)
        rows += nodes.node_rows(all_nodes, usable)
        pool_nodes = sorted({n for p in usable for n in nodes.nodes_with_pools(all_nodes, p.pools)})
        if install is not None:
            rows += self._daemonset(install, pool_nodes)
            rows += probe.tls_rows(self.reader, install)
            if profiles is not None:
                rows += probe.admission_rows(self.reader, install, profiles, self.options.namespace)
        if self.options.pod is not None:
            rows += self._pod(install, profiles or Profiles({}))
        return rows

    def _install(self, rows: list[Row]) -> Install | None:
        if self.options.webhook_config:
            config = self.reader.get(WEBHOOK_CONFIGS, self.options.webhook_config)
            found = [config] if config else []
        else:
            found = self.reader.list(WEBHOOK_CONFIGS, label_selector=PART_OF)
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
        return Install(config, webhook, release, namespace)

    def _profiles(self, install: Install | None, rows: list[Row]) -> Profiles | None:
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
            maps = self.reader.list(CONFIG_MAPS, install.namespace, label_selector=selector)
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
        maps = self.reader.list(CONFIG_MAPS, field_selector=f"metadata.name={sriovdp.CONFIGMAP}")
        return {
            f"{m['metadata']['namespace']}/{m['metadata']['name']}": (m.get("data") or {}).get(
                sriovdp.CONFIG_KEY, ""
            )
            for m in maps
        }

    def _daemonset(self, install: Install, pool_nodes: list[str]) -> list[Row]:
        selector = (
            f"app.kubernetes.io/instance={install.release},"
            "app.kubernetes.io/component=cni-installer"
        )
        found = self.reader.list(DAEMON_SETS, label_selector=selector)
        if not found:
            return nodes.daemonset_rows(None, [], pool_nodes)
        daemonset = found[0]
        match = (daemonset.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
        pods = self.reader.list(
            PODS,
            daemonset["metadata"]["namespace"],
            label_selector=",".join(f"{k}={v}" for k, v in sorted(match.items())),
        )
        return nodes.daemonset_rows(daemonset, pods, pool_nodes)

    # -- one pod -----------------------------------------------------------------------------

    def _pod(self, install: Install | None, profiles: Profiles) -> list[Row]:
        ns, name = self.options.namespace, str(self.options.pod)
        pod = self.reader.get(PODS, name, ns)
        # The pod's own events; for a pod that is not there, its controller's refusals.
        selector = f"involvedObject.name={name}" if pod else "reason=FailedCreate"
        events = self.reader.list(EVENTS, ns, field_selector=selector)
        webhook = install.webhook if install else None
        if pod is not None:
            namespace = self.reader.get(NAMESPACES, ns) or {}
            return podwhy.pod_rows(pod, namespace, webhook, profiles, events)
        rows = podwhy.denial_rows(ns, name, events)
        replay = probe.replay(self.reader, install, ns, name)
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
