"""The HTTP surface in process (the same app over real TLS is in test_server.py)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import anyio
import jsonpatch
import pytest

from tests.webhook.asgi import AsgiClient, response_of
from tests.webhook.builders import (
    EXAMPLES,
    MANY_POOLS,
    POOL_A,
    USER_NETWORK,
    USER_POOL,
    example_profiles,
    expected,
    many_legs_nads,
    many_legs_profiles,
    nad,
    pod,
    source,
    vfs,
)
from tests.webhook.pki import CA
from tests.webhook.reviews import decoded_patch, review
from tests.webhook.scrape import samples
from webhook.app import Settings, create_app
from webhook.mutation import mutate, needed_nads
from webhook.nads import NadFetchError, NadSource, NetworkAttachmentDefinition, StaticNadSource
from webhook.profiles import parse_profiles
from webhook.tls import CertificateReloader, TlsFiles

OURS = [
    {"name": "sriov-pf-a", "interface": "net1"},
    {"name": "sriov-pf-b", "interface": "net2"},
    {"name": "bond-net", "interface": "bond0"},
]
SETTINGS = Settings(profiles=EXAMPLES / "profiles.yaml", max_body_bytes=64 * 1024)
TOO_LARGE = "request body is larger than the webhook's --max-body-bytes (65536); "
MORE = (
    "the API server sends at most a 3 MiB Pod, so this is no AdmissionReview from it; if yours "
    "accepts larger objects, raise --max-body-bytes"
)


@pytest.fixture
def client() -> AsgiClient:
    return AsgiClient(create_app(SETTINGS, source()))


def _post(client: AsgiClient, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/mutate", content=data, headers={"content-type": "application/json", **headers}
    )


def test_seed_pod_is_patched(client: AsgiClient) -> None:
    p = pod()
    r = _post(client, review(p))
    assert r.status_code == 200
    body = r.json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response = body["response"]
    assert response["uid"] == "0b1e8c3a-1111-4222-8333-944455556666"
    assert response["allowed"] is True
    assert jsonpatch.apply_patch(p, decoded_patch(response)) == expected(p, OURS, vfs())


def test_dry_run_gets_the_same_patch(client: AsgiClient) -> None:
    p = pod()
    wet = _post(client, review(p)).json()["response"]
    dry = _post(client, review(p, dry_run=True)).json()["response"]
    assert decoded_patch(dry) == decoded_patch(wet)


def test_denial_is_403_with_the_message(client: AsgiClient) -> None:
    p = pod(annotations={"bond-injector.io/profile": "gold"})
    response = _post(client, review(p)).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert (
        response["status"]["message"]
        == mutate(p, "default", example_profiles(), source().cached).message
    )
    assert "patch" not in response


def test_warnings_are_returned() -> None:
    nads = source(nad("sriov-pf-b", POOL_A, {"type": "sriov"}))
    profiles = EXAMPLES.parent / "tests" / "webhook" / "same_pool_allowed.yaml"
    c = AsgiClient(create_app(Settings(profiles=profiles), nads))
    response = _post(c, review(pod())).json()["response"]
    assert response["allowed"] is True
    assert len(response["warnings"]) == 1 and "both use pool" in response["warnings"][0]


@pytest.mark.parametrize(
    "body",
    [
        review(pod(labels={})),
        review(pod(), operation="UPDATE"),
        review(pod(), operation="DELETE"),
        review({"metadata": {"name": "cm"}}, kind="ConfigMap"),
    ],
    ids=["no label", "update", "delete", "not a pod"],
)
def test_out_of_scope_is_allowed_without_patch(client: AsgiClient, body: dict[str, Any]) -> None:
    response = _post(client, body).json()["response"]
    assert response == {"uid": body["request"]["uid"], "allowed": True}


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "body is not JSON"),
        ([], {}, 400, "body must be an AdmissionReview object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, {}, 400,
         "expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got apiVersion "
         "'admission.k8s.io/v1beta1' kind 'AdmissionReview'"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, {}, 400,
         "AdmissionReview has no request object"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}, {}, 400,
         "request.uid is missing; the response must echo it"),
        (review(None), {}, 400, "request.object is missing"),
        (review(pod()), {"content-type": "text/plain"}, 415,
         "Content-Type must be application/json, got 'text/plain'"),
        (b"x" * (65 * 1024), {}, 413, TOO_LARGE),
    ],
    ids=["not json", "list", "v1beta1", "no request", "no uid", "no object", "text/plain", "huge"],
)  # fmt: skip
def test_malformed_reviews_get_a_clear_4xx(
    client: AsgiClient, body: Any, headers: dict[str, str], status: int, message: str
) -> None:
    r = _post(client, body, **headers)
    assert r.status_code == status
    assert r.json()["error"].startswith(message)
    assert "Traceback" not in r.text


def test_wrong_method(client: AsgiClient) -> None:
    assert client.get("/mutate").status_code == 405


class _Broken(StaticNadSource):
    def cached(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        raise RuntimeError("boom")


def _admission_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "webhook.admission"]


def test_a_bug_is_an_errored_review_not_a_500(caplog: pytest.LogCaptureFixture) -> None:
    c = AsgiClient(create_app(SETTINGS, _Broken([])))
    with caplog.at_level(logging.INFO, logger="webhook.admission"):
        r = _post(c, review(pod()))
    assert r.status_code == 200
    response = r.json()["response"]
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 500,
        "message": "bond-injector could not decide (RuntimeError: boom); see its log",
    }
    # Logged once: the request's line, at ERROR, carrying the traceback of the bug.
    (record,) = _admission_records(caplog)
    assert record.levelno == logging.ERROR
    assert json.loads(record.getMessage())["outcome"] == "error"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


class _Unreachable(StaticNadSource):
    """An API server that answers every GET with 503 (the cache is empty)."""

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        what = f"reading network-attachment-definition {namespace}/{name}"
        raise NadFetchError(f"{what}: 503 Service Unavailable")


def test_an_unreachable_api_server_is_an_error_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = AsgiClient(create_app(SETTINGS, _Unreachable([])))
    with caplog.at_level(logging.INFO, logger="webhook.admission"):
        response = _post(c, review(pod())).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert response["status"]["message"].startswith(
        "bond-injector could not decide: reading network-attachment-definition default/"
    )
    (record,) = _admission_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is None


class _ColdCache(StaticNadSource):
    """Knows nothing until asked: every NAD comes from `fetch` (the API server).

    With `together`, each fetch waits until that many are in flight: fetches made one after the
    other break the barrier, so a passing test shows they ran concurrently.
    """

    def __init__(self, nads: StaticNadSource, together: int = 1) -> None:
        super().__init__([])
        self.backing = nads
        self.fetched: list[tuple[str, str]] = []
        self._barrier = threading.Barrier(together)

    def fetch(self, namespace: str, name: str) -> NetworkAttachmentDefinition | None:
        self.fetched.append((namespace, name))
        self._barrier.wait(timeout=30)
        return self.backing.cached(namespace, name)


def test_cache_miss_is_fetched() -> None:
    cold = _ColdCache(source(), together=3)
    c = AsgiClient(create_app(SETTINGS, cold))
    response = _post(c, review(pod())).json()["response"]
    metrics = c.get("/metrics").text
    assert response["allowed"] is True
    assert sorted(cold.fetched) == [
        ("default", "bond-net"),
        ("default", "sriov-pf-a"),
        ("default", "sriov-pf-b"),
    ]
    assert samples(metrics)["bond_injector_nad_api_fetches_total"] == 3


def _many_legs_app(tmp_path: Path, nads: NadSource) -> AsgiClient:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(many_legs_profiles(3, 4))
    return AsgiClient(create_app(Settings(profiles=profiles), nads))


@pytest.mark.parametrize("legs", [3, 4])
@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_every_needed_nad_in_one_round(tmp_path: Path, legs: int, cache: str) -> None:
    """A profile of three or four legs and a network of the user's own, cold cache or warm: one
    mutation, every miss fetched once, all together; the user's pool is counted too."""
    nads = StaticNadSource(many_legs_nads())
    cold = _ColdCache(nads, together=legs + 2)
    c = _many_legs_app(tmp_path, cold if cache == "cold" else nads)
    p = pod(annotations={"bond-injector.io/profile": f"legs-{legs}"}, networks=[USER_NETWORK])
    response = _post(c, review(p)).json()["response"]
    assert response["allowed"] is True, response
    assert "warnings" not in response
    legs_then_bond = [
        *({"name": f"sriov-pf-{'abcd'[i]}", "interface": f"net{i + 1}"} for i in range(legs)),
        {"name": f"bond-{legs}", "interface": "bond0"},
    ]
    counts = {pool: "1" for pool in (*MANY_POOLS[:legs], USER_POOL)}
    want = expected(p, [USER_NETWORK, *legs_then_bond], {"requests": counts, "limits": counts})
    assert jsonpatch.apply_patch(p, decoded_patch(response)) == want
    needed = needed_nads(p, "default", parse_profiles(many_legs_profiles(3, 4)))
    assert len(needed) == legs + 2
    fetched = sorted(needed) if cache == "cold" else []
    assert sorted(cold.fetched) == fetched
    assert samples(c.get("/metrics").text)["bond_injector_nad_api_fetches_total"] == len(fetched)


def test_health_ready_metrics_and_log_line(
    client: AsgiClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.get("/healthz").text == "ok\n"
    assert client.get("/readyz").json() == {"ready": True}
    with caplog.at_level(logging.INFO, logger="webhook.admission"):
        _post(client, review(pod()))
        _post(client, review(pod(annotations={"bond-injector.io/profile": "gold"})))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "webhook.admission"]
    assert [(line["outcome"], line["name"]) for line in lines] == [
        ("patched", "test-pod"),
        ("denied", "test-pod"),
    ]
    assert all(line["duration_ms"] >= 0 and line["uid"] for line in lines)
    scraped = samples(client.get("/metrics").text)
    assert scraped['bond_injector_admission_requests_total{outcome="patched"}'] == 1
    assert scraped['bond_injector_admission_requests_total{outcome="denied"}'] == 1
    assert scraped["bond_injector_admission_duration_seconds_count"] == 2
    assert scraped["bond_injector_nad_cache_synced"] == 1
    assert scraped["bond_injector_nad_cache_objects"] == 3


class _Unsynced(StaticNadSource):
    @property
    def synced(self) -> bool:
        return False


def test_not_ready_until_the_nad_cache_synced() -> None:
    r = AsgiClient(create_app(SETTINGS, _Unsynced([]))).get("/readyz")
    assert r.status_code == 503
    problems = ["NAD cache not synced with the API server yet"]
    assert r.json() == {"ready": False, "problems": problems}


def _reloader(tmp_path: Path, days: int, ago: int) -> CertificateReloader:
    cert, key = CA("readyz-ca").issue("localhost", days=days, ago=ago).write(tmp_path, "tls")
    return CertificateReloader(TlsFiles(cert, key))


def test_an_expired_serving_certificate_is_not_ready(tmp_path: Path) -> None:
    expired = _reloader(tmp_path, days=1, ago=2)
    r = AsgiClient(create_app(SETTINGS, source(), certificate=expired)).get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"ready": False, "problems": ["the serving certificate has expired"]}


def test_certificate_expiry_is_exported(tmp_path: Path) -> None:
    valid = _reloader(tmp_path, days=3, ago=0)
    c = AsgiClient(create_app(SETTINGS, source(), certificate=valid))
    assert c.get("/readyz").status_code == 200
    expiry = samples(c.get("/metrics").text)["bond_injector_certificate_expiry_timestamp_seconds"]
    assert expiry == valid.not_after


def test_profiles_are_reread_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text((EXAMPLES / "profiles.yaml").read_text())
    c = AsgiClient(create_app(Settings(profiles=path), source()))
    assert (
        _post(c, review(pod(annotations={"bond-injector.io/profile": "gold"}))).json()["response"][
            "allowed"
        ]
        is False
    )
    path.write_text((EXAMPLES / "profiles.yaml").read_text().replace("default:", "gold:"))
    assert (
        _post(c, review(pod(annotations={"bond-injector.io/profile": "gold"}))).json()["response"][
            "allowed"
        ]
        is True
    )


def _call_raw(app: Any, messages: list[dict[str, Any]]) -> tuple[int, bytes]:
    """Drive the ASGI app with a body in several chunks and no content-length."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mutate",
        "headers": [(b"content-type", b"application/json")],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, receive, send)

    anyio.run(run)
    return response_of(sent)


def test_chunked_body_is_assembled_and_limited() -> None:
    app = create_app(SETTINGS, source())
    body = json.dumps(review(pod())).encode()
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages[-1]["more_body"] = False
    status, data = _call_raw(app, messages)
    assert status == 200 and json.loads(data)["response"]["allowed"] is True
    huge = [{"type": "http.request", "body": b" " * 40_000, "more_body": True}] * 2
    status, data = _call_raw(app, [*huge, {"type": "http.request", "body": b""}])
    assert (status, json.loads(data)["error"]) == (413, TOO_LARGE + MORE)
