"""Why one pod has no bond, from the pod, its namespace, the webhook's selectors and its events.

In the order a pod meets the chain: the webhook's object and namespace selectors, the mutation
(the networks annotation), Multus' report (network-status), the scheduler, the sandbox (CNI).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.annotation import NETWORKS_ANNOTATION, AnnotationError, parse_networks
from webhook.doctor import selectors
from webhook.doctor.report import Row, failed, passed, warned
from webhook.mutation import PROFILE_ANNOTATION
from webhook.profiles import DEFAULT_PROFILE, Profiles

NETWORK_STATUS_ANNOTATION = "k8s.v1.cni.cncf.io/network-status"
CHECK = "pod"


def pod_rows(
    pod: Mapping[str, Any],
    namespace: Mapping[str, Any],
    webhook: Mapping[str, Any] | None,
    profiles: Profiles,
    events: Sequence[Mapping[str, Any]],
) -> list[Row]:
    meta = pod.get("metadata") or {}
    ns, name = str(meta.get("namespace")), str(meta.get("name"))
    subject = f"pod {ns}/{name}"
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    object_selector = (webhook or {}).get("objectSelector")
    unmet = selectors.unmet(object_selector, labels)
    if unmet:
        return [
            failed(
                CHECK,
                subject,
                f"not labelled for the webhook: its labels miss {', '.join(unmet)}, so the "
                "webhook never saw it and it has no bond",
                'add the label (metadata.labels.bond: "true") to the pod template and recreate '
                "the pod; labels added later change nothing",
            )
        ]
    ns_labels = (namespace.get("metadata") or {}).get("labels") or {}
    unmet = selectors.unmet((webhook or {}).get("namespaceSelector"), ns_labels)
    if unmet:
        return [
            failed(
                CHECK,
                subject,
                f"namespace {ns} is opted out of the webhook (its labels fail {', '.join(unmet)}), "
                "so the pod was admitted without a bond",
                "run bonded pods in another namespace, or remove the opt-out label "
                "(bond-injector.io/disabled) / take it out of webhook.excludedNamespaces, then "
                "recreate the pod",
            )
        ]
    profile = profiles.get(annotations.get(PROFILE_ANNOTATION, DEFAULT_PROFILE))
    bond_if = profile.bond.interface if profile else "bond0"
    leg_ifs = [leg.interface for leg in profile.legs] if profile else []
    try:
        entries = parse_networks(annotations[NETWORKS_ANNOTATION])
    except (KeyError, AnnotationError):
        entries = []
    interfaces = [e.interface or f"net{i + 1}" for i, e in enumerate(entries)]
    if bond_if not in interfaces:
        return [
            failed(
                CHECK,
                subject,
                f"labelled, but its {NETWORKS_ANNOTATION} annotation has no {bond_if}: it was "
                "admitted without the webhook's mutation (created before the webhook was "
                "installed, or the webhook was unreachable with failurePolicy Ignore)",
                "fix what the other rows report, then delete and recreate the pod",
            )
        ]
    attached = _attached(annotations.get(NETWORK_STATUS_ANNOTATION), bond_if, leg_ifs)
    if attached is not None:
        return [passed(CHECK, subject, attached)]
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName"):
        scheduled = _condition(status, "PodScheduled")
        reason = _latest(events, "FailedScheduling") or (scheduled or {}).get("message")
        if reason:
            return [
                failed(
                    CHECK,
                    subject,
                    f"Pending, not scheduled: {reason}",
                    "a node needs allocatable of every pool of the profile (see the nodes row), "
                    "and free VFs; a ResourceQuota or the pod's own selectors can also stop it",
                )
            ]
        return [warned(CHECK, subject, "not scheduled yet, and no scheduler event", "wait")]
    sandbox = _latest(events, "FailedCreatePodSandBox")
    if sandbox:
        return [
            failed(
                CHECK,
                subject,
                f"scheduled on {spec['nodeName']}, but its sandbox failed: {sandbox}",
                "the message names the CNI plugin that failed (Multus, sriov or bond); for bond, "
                "see the bond NAD's config and the node's bond CNI (the cni-daemonset row)",
            )
        ]
    return [
        warned(
            CHECK,
            subject,
            f"scheduled on {spec['nodeName']} ({status.get('phase', 'no phase')}) with the bond "
            f"requested, but Multus has not reported {bond_if} in {NETWORK_STATUS_ANNOTATION}",
            f"kubectl describe pod -n {ns} {name} (events); on the node, the kubelet's log",
        )
    ]


def _attached(raw: str | None, bond_if: str, leg_ifs: Sequence[str]) -> str | None:
    """What Multus' network-status says was attached, when it reports the bond; else None."""
    if not raw:
        return None
    try:
        status = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(status, list):
        return None
    by_if = {str(e.get("interface")): e for e in status if isinstance(e, dict)}
    bond = by_if.get(bond_if)
    if bond is None:
        return None
    legs = []
    for leg in leg_ifs:
        entry = by_if.get(leg)
        if entry is None:
            legs.append(f"{leg} (not reported)")
            continue
        pci = ((entry.get("device-info") or {}).get("pci") or {}).get("pci-address")
        network = entry.get("name")
        legs.append(f"{leg} = VF {pci} of {network}" if pci else f"{leg} of {network}")
    ips = ", ".join(str(ip) for ip in bond.get("ips") or []) or "no address"
    return f"attached: {bond_if} ({ips}) over {'; '.join(legs)}"


def denial_rows(namespace: str, name: str, events: Sequence[Mapping[str, Any]]) -> list[Row]:
    """A pod that does not exist: a controller's FailedCreate events say why it was refused."""
    denials = [
        e
        for e in events
        if e.get("reason") == "FailedCreate"
        and _involves(e, name)
        and "denied the request" in str(e.get("message"))
    ]
    if not denials:
        return []
    event = max(denials, key=_when)
    involved = event.get("involvedObject") or {}
    return [
        failed(
            CHECK,
            f"{str(involved.get('kind', 'object')).lower()} {namespace}/{involved.get('name')}",
            f"its pods are denied: {event.get('message')}",
            "fix what the message names (it gives the object, the field and the fix); the "
            "controller retries on its own",
        )
    ]


def _involves(event: Mapping[str, Any], name: str) -> bool:
    involved = str((event.get("involvedObject") or {}).get("name"))
    return involved == name or involved.startswith(f"{name}-")


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _when(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _latest(events: Sequence[Mapping[str, Any]], reason: str) -> str | None:
    matching = [e for e in events if e.get("reason") == reason]
    return str(max(matching, key=_when).get("message")) if matching else None
