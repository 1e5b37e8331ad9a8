"""The certificate decisions, table by table, plus a real TLS handshake with what they produce."""

from __future__ import annotations

import ast
import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest

from certs import pki

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
NAMES = pki.service_dns_names("bond-injector", "bond-injector")
X509_V_ERR_HOSTNAME_MISMATCH = 62  # OpenSSL's x509_vfy.h


def _fresh(validity: dt.timedelta = 365 * DAY) -> tuple[pki.KeyPair, pki.KeyPair]:
    ca = pki.generate_ca("test-ca", NOW, 3650 * DAY)
    return ca, pki.generate_serving(ca, NAMES, ["127.0.0.1"], NOW, validity)


def _assess(
    ca: pki.KeyPair | None,
    serving: pki.KeyPair | None,
    *,
    names: list[str] = NAMES,
    ips: tuple[str, ...] = ("127.0.0.1",),
    now: dt.datetime = NOW,
    renew_before: dt.timedelta = 30 * DAY,
) -> pki.Assessment:
    return pki.assess(
        ca, serving, dns_names=names, ips=list(ips), now=now, renew_before=renew_before
    )


def test_service_dns_names_run_from_short_to_fully_qualified() -> None:
    assert pki.service_dns_names("wh", "ns") == [
        "wh",
        "wh.ns",
        "wh.ns.svc",
        "wh.ns.svc.cluster.local",
    ]
    assert pki.service_dns_names("wh", "ns", "k8s.example")[-1] == "wh.ns.svc.k8s.example"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", 30 * DAY),
        ("12h", dt.timedelta(hours=12)),
        ("2w", 14 * DAY),
        ("90m", dt.timedelta(minutes=90)),
        (" 45s ", dt.timedelta(seconds=45)),
        ("0d", dt.timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert pki.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "-1d", "30 days", ""])
def test_parse_duration_refuses_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="for example 30d"):
        pki.parse_duration(text)


def test_a_fresh_pair_is_healthy() -> None:
    ca, serving = _fresh()
    assert _assess(ca, serving) == pki.Assessment(pki.Verdict.HEALTHY)


def test_nothing_stored_means_a_new_ca() -> None:
    assert _assess(None, None) == pki.Assessment(pki.Verdict.NEW_CA, ("no CA is stored",))


def test_a_missing_serving_pair_is_renewed_with_the_kept_ca() -> None:
    ca, _ = _fresh()
    assert _assess(ca, None) == pki.Assessment(
        pki.Verdict.RENEW_SERVING, ("no serving certificate is stored",)
    )


@pytest.mark.parametrize(
    ("names", "ips", "missing"),
    [
        ([*NAMES, "other.example"], ("127.0.0.1",), "other.example"),
        (NAMES, ("127.0.0.1", "::1"), "::1"),
        (["BOND-INJECTOR"], (), None),  # DNS names compare without case
    ],
)
def test_names_not_covered_renew_the_serving_pair(
    names: list[str], ips: tuple[str, ...], missing: str | None
) -> None:
    ca, serving = _fresh()
    result = _assess(ca, serving, names=names, ips=ips)
    if missing is None:
        assert result.verdict is pki.Verdict.HEALTHY
    else:
        assert result == pki.Assessment(
            pki.Verdict.RENEW_SERVING, (f"the serving certificate does not cover {missing}",)
        )


@pytest.mark.parametrize(
    ("age", "verdict"),
    [
        (300 * DAY, pki.Verdict.HEALTHY),  # 65 days left, threshold 30
        (336 * DAY, pki.Verdict.RENEW_SERVING),  # 29 days left
        (335 * DAY, pki.Verdict.RENEW_SERVING),  # exactly 30 days left: renew
        (400 * DAY, pki.Verdict.RENEW_SERVING),  # expired
    ],
)
def test_serving_renewal_threshold(age: dt.timedelta, verdict: pki.Verdict) -> None:
    ca, serving = _fresh()
    assert _assess(ca, serving, now=NOW + age).verdict is verdict


def test_the_threshold_is_configurable() -> None:
    ca, serving = _fresh()
    later = NOW + 300 * DAY
    assert _assess(ca, serving, now=later, renew_before=30 * DAY).verdict is pki.Verdict.HEALTHY
    result = _assess(ca, serving, now=later, renew_before=90 * DAY)
    assert result.verdict is pki.Verdict.RENEW_SERVING
    assert "within the renewal threshold of 90 days" in result.reasons[0]


def test_an_expiring_ca_means_a_new_ca() -> None:
    ca = pki.generate_ca("short", NOW, 40 * DAY)
    serving = pki.generate_serving(ca, NAMES, [], NOW, 365 * DAY)
    assert _assess(ca, serving, ips=(), now=NOW).verdict is pki.Verdict.HEALTHY
    result = _assess(ca, serving, ips=(), now=NOW + 15 * DAY)
    assert result.verdict is pki.Verdict.NEW_CA
    assert "CA certificate expires" in result.reasons[0]


def test_the_serving_certificate_never_outlives_its_ca() -> None:
    ca = pki.generate_ca("short", NOW, 40 * DAY)
    serving = pki.generate_serving(ca, NAMES, [], NOW, 365 * DAY)
    assert pki.not_after(serving.cert_pem) == pki.not_after(ca.cert_pem)


def test_a_key_that_does_not_match_is_found() -> None:
    ca, serving = _fresh()
    _, other = _fresh()
    swapped = pki.KeyPair(serving.cert_pem, other.key_pem)
    result = _assess(ca, swapped)
    assert result == pki.Assessment(
        pki.Verdict.RENEW_SERVING, ("the serving certificate does not match its key",)
    )
    result = _assess(pki.KeyPair(ca.cert_pem, serving.key_pem), serving)
    assert result == pki.Assessment(
        pki.Verdict.NEW_CA, ("the CA certificate does not match the CA key",)
    )


def test_a_pair_from_another_ca_is_renewed() -> None:
    ca, _ = _fresh()
    _, foreign = _fresh()
    assert _assess(ca, foreign).reasons == (
        "the serving certificate was not signed by the stored CA",
    )


def test_garbage_is_reported_not_raised() -> None:
    ca, serving = _fresh()
    garbage = pki.KeyPair(b"not a pem", b"nor this")
    assert _assess(garbage, serving).verdict is pki.Verdict.NEW_CA
    assert "does not parse" in _assess(garbage, serving).reasons[0]
    assert _assess(ca, garbage).verdict is pki.Verdict.RENEW_SERVING


def test_the_key_never_shows_in_repr() -> None:
    ca, _ = _fresh()
    assert b"PRIVATE KEY" in ca.key_pem
    assert "PRIVATE" not in repr(ca)


def test_a_serving_pair_needs_a_subject() -> None:
    ca, _ = _fresh()
    with pytest.raises(ValueError, match="at least one DNS name or IP"):
        pki.generate_serving(ca, [], [], NOW, DAY)


def test_ca_bundle_keeps_a_valid_previous_ca_and_drops_an_expired_one() -> None:
    current, _ = _fresh()
    previous = pki.generate_ca("previous", NOW, 10 * DAY)
    bundle = pki.ca_bundle(current.cert_pem, previous.cert_pem, None, now=NOW)
    assert bundle == current.cert_pem + previous.cert_pem
    assert pki.ca_bundle(current.cert_pem, previous.cert_pem, now=NOW + 11 * DAY) == (
        current.cert_pem
    )
    assert pki.ca_bundle(current.cert_pem, current.cert_pem, now=NOW) == current.cert_pem


def test_a_real_tls_handshake_verifies_the_service_name(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Real clock: the handshake checks validity against the current time.
    now = dt.datetime.now(dt.UTC)
    ca = pki.generate_ca("handshake-ca", now, 10 * DAY)
    serving = pki.generate_serving(ca, NAMES, ["127.0.0.1"], now, DAY)
    d = tmp_path_factory.mktemp("tls")
    (d / "tls.crt").write_bytes(serving.cert_pem)
    (d / "tls.key").write_bytes(serving.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                try:
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="bond-injector.bond-injector.svc") as tls,
        ):
            assert tls.recv(2) == b"ok"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError) as refused,
        ):
            client_ctx.wrap_socket(raw, server_hostname="evil.example")
        # Refused for the name, not for trust or dates: OpenSSL's code, not Python's wording.
        assert refused.value.verify_code == X509_V_ERR_HOSTNAME_MISMATCH
        thread.join(timeout=5)


def test_pki_stays_pure() -> None:
    """The decisions import no Kubernetes client, no subprocess and no logging of their own."""
    tree = ast.parse(Path(pki.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert imported <= {"__future__", "datetime", "enum", "ipaddress", "re", "collections",
                        "dataclasses", "cryptography"}, imported  # fmt: skip
