"""A pod's own annotation entries may name NADs in other namespaces only where its profile allows.

The webhook reads NADs cluster-wide; its answer must not tell a pod author what another
namespace holds (issue 21, finding 5): the same denial whether that NAD exists or not, given
before any lookup, so no pool of it is counted and the API server is never asked for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonpatch
import pytest

from tests.webhook.asgi import AsgiClient
from tests.webhook.builders import (
    A1,
    B2,
    BOND0,
    EXAMPLES,
    example_profiles,
    expected,
    nad,
    pod,
    source,
    vfs,
)
from tests.webhook.reviews import review
from webhook.app import Settings, create_app
from webhook.mutation import mutate, needed_nads
from webhook.nads import NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import ProfileError, parse_profiles

HIDDEN_POOL = "vendor.com/finance_pool"
# An SR-IOV NAD in a namespace the pod's author has no business with.
HIDDEN = nad("secret-net", HIDDEN_POOL, {"type": "sriov"}, namespace="finance")
DENIAL = (
    "pod default/test-pod: annotation k8s.v1.cni.cncf.io/networks entry 0 "
    "(finance/secret-net@net9) names a network-attachment-definition in namespace finance; "
    "profile 'default' allows the pod's own entries from namespaces default only. Use a NAD in "
    "namespace default, or have an administrator add 'finance' to the profile's allowedNamespaces"
)
EXAMPLE_PROFILES = (EXAMPLES / "profiles.yaml").read_text()


class _Recording(StaticNadSource):
    """The NADs, remembering every key the webhook asked for (cached or fetched)."""

    def __init__(self, nads: StaticNadSource) -> None:
        super().__init__([])
        self._backing = nads
        self.asked: list[tuple[str, str]] = []

    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.asked.append((namespace, name))
        return self._backing.cached(namespace, name)

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.asked.append((namespace, name))
        return self._backing.fetch(namespace, name)


@pytest.mark.parametrize(
    "networks",
    [
        "finance/secret-net@net9",
        [{"name": "secret-net", "namespace": "finance", "interface": "net9"}],
    ],
    ids=["short form", "JSON form"],
)
@pytest.mark.parametrize("exists", [True, False], ids=["exists", "missing"])
def test_another_namespaces_nad_is_refused_alike_whether_it_exists(
    networks: str | list[dict[str, str]], exists: bool
) -> None:
    nads = _Recording(source(HIDDEN) if exists else source())
    decision = mutate(pod(networks=networks), "default", example_profiles(), nads.cached)
    assert (decision.allowed, decision.message, decision.warnings) == (False, DENIAL, ())
    assert ("finance", "secret-net") not in nads.asked
    assert ("finance", "secret-net") not in needed_nads(
        pod(networks=networks), "default", example_profiles()
    )


def test_a_namespace_the_profile_allows_is_resolved_and_counted() -> None:
    profiles = parse_profiles(EXAMPLE_PROFILES + "    allowedNamespaces: [finance]\n")
    p = pod(networks="finance/secret-net@net9")
    decision = mutate(p, "default", profiles, source(HIDDEN).cached)
    assert decision.allowed
    entry = {"name": "secret-net", "namespace": "finance", "interface": "net9"}
    counts = {**vfs()["limits"], HIDDEN_POOL: "1"}
    resources = {"requests": counts, "limits": counts}
    assert jsonpatch.apply_patch(p, decision.patch) == expected(
        p, [entry, A1, B2, BOND0], resources
    )


def test_the_profiles_own_networks_elsewhere_are_allowed_when_the_pod_lists_them() -> None:
    """A profile's attachments are the administrator's: a pod may name them itself."""
    profiles = parse_profiles(
        EXAMPLE_PROFILES.replace("network: sriov-pf-a", "network: nets/sriov-pf-a")
    )
    leg = source().cached("default", "sriov-pf-a")
    assert leg is not None
    nads = source(nad("sriov-pf-a", leg.resource_name, leg.config, namespace="nets"))
    p = pod(networks="nets/sriov-pf-a@net1")
    decision = mutate(p, "default", profiles, nads.cached)
    assert (decision.allowed, decision.message) == (True, "")
    # ... but not another NAD of that namespace.
    other = mutate(pod(networks="nets/sriov-pf-b@net7"), "default", profiles, nads.cached)
    assert "names a network-attachment-definition in namespace nets" in other.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("finance", "allowedNamespaces: expected a list of namespace names"),
        ("[Finance]", "allowedNamespaces[0]: 'Finance' is not a namespace name"),
        ("[ok, 3]", "allowedNamespaces[1]: 3 is not a namespace name"),
    ],
)
def test_allowed_namespaces_must_be_namespace_names(value: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_profiles(EXAMPLE_PROFILES + f"    allowedNamespaces: {value}\n")


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_served_answer_is_the_same_for_a_missing_and_an_existing_nad(
    tmp_path: Path, dry_run: bool
) -> None:
    """Over the app (as `kubectl create --dry-run=server` reaches it): one text, no lookup."""
    answers = []
    for nads in (source(HIDDEN), source()):
        recording = _Recording(nads)
        client = AsgiClient(create_app(Settings(profiles=EXAMPLES / "profiles.yaml"), recording))
        body = json.dumps(review(pod(networks="finance/secret-net@net9"), dry_run=dry_run))
        r = client.post("/mutate", body.encode(), {"content-type": "application/json"})
        answers.append(r.json()["response"])
        assert ("finance", "secret-net") not in recording.asked
        assert "bond_injector_nad_api_fetches_total 0.0" in client.get("/metrics").text
    assert answers[0] == answers[1]
    assert answers[0]["status"]["message"] == DENIAL
    assert "patch" not in answers[0]
