"""The real server: uvicorn over TLS on 127.0.0.1, real handshakes, certificate files swapped."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import jsonpatch
import pytest

from tests.poll import poll
from tests.webhook.builders import EXAMPLES, expected, pod, vfs
from tests.webhook.live import client_context, peer_serial, request, running
from tests.webhook.pki import CA, Issued, secret_volume_swap
from tests.webhook.reviews import decoded_patch, review
from tests.webhook.scrape import samples
from tests.webhook.test_app import OURS
from webhook.app import Settings
from webhook.server import ServeOptions
from webhook.tls import CertificateReloader, TlsError, TlsFiles

SETTINGS = Settings(profiles=EXAMPLES / "profiles.yaml")
# The CA of the API server's admission client certificates (its kubeconfig for webhooks).
CA_CLIENT = CA("apiserver-client-ca")


@dataclass
class Pki:
    ca: CA
    ca_file: Path
    mount: Path
    first: Issued

    @property
    def files(self) -> TlsFiles:
        return TlsFiles(self.mount / "tls.crt", self.mount / "tls.key")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CA("webhook-ca")
    mount = tmp_path / "tls"
    mount.mkdir()
    first = ca.issue("bond-injector.webhook.svc")
    secret_volume_swap(mount, first, 1)
    return Pki(ca, ca.write(tmp_path / "ca.crt"), mount, first)


def _options(files: TlsFiles) -> ServeOptions:
    return ServeOptions(
        settings=SETTINGS, tls=files, nads_file=EXAMPLES / "nads.yaml", cert_check_interval=0.0
    )


@pytest.fixture
def live(pki: Pki) -> Iterator[tuple[int, ssl.SSLContext]]:
    with running(_options(pki.files)) as server:
        yield server.port, client_context(pki.ca_file)


def test_admission_over_tls(live: tuple[int, ssl.SSLContext]) -> None:
    port, ctx = live
    p = pod()
    status, body = request(port, ctx, "POST", "/mutate", review(p))
    assert status == 200
    response = json.loads(body)["response"]
    assert jsonpatch.apply_patch(p, decoded_patch(response)) == expected(p, OURS, vfs())
    status, body = request(port, ctx, "POST", "/mutate", b"{")
    assert (status, json.loads(body)["error"][:16]) == (400, "body is not JSON")
    assert request(port, ctx, "POST", "/mutate", review(p), content_type="text/plain")[0] == 415


def test_health_ready_and_metrics_over_tls(live: tuple[int, ssl.SSLContext]) -> None:
    port, ctx = live
    assert request(port, ctx, "GET", "/healthz") == (200, b"ok\n")
    assert request(port, ctx, "GET", "/readyz")[0] == 200
    status, metrics = request(port, ctx, "GET", "/metrics")
    assert status == 200
    assert "bond_injector_certificate_expiry_timestamp_seconds" in samples(metrics)
    assert samples(metrics)["bond_injector_nad_cache_synced"] == 1


def test_tls_below_1_2_is_refused(live: tuple[int, ssl.SSLContext]) -> None:
    port, ctx = live
    with ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
    ) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 if it can
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        legacy.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            peer_serial(port, legacy)


def test_server_context_floor(pki: Pki) -> None:
    context = CertificateReloader(pki.files).context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_renewed_certificate_is_served_without_restart(pki: Pki) -> None:
    with running(_options(pki.files)) as server:
        ctx = client_context(pki.ca_file)
        assert peer_serial(server.port, ctx) == pki.first.serial
        renewed = pki.ca.issue("bond-injector.webhook.svc")
        secret_volume_swap(pki.mount, renewed, 2)
        poll(lambda: peer_serial(server.port, ctx) == renewed.serial, what="the renewed cert")
        assert request(server.port, ctx, "GET", "/healthz")[0] == 200


def test_mismatched_pair_is_kept_out(pki: Pki) -> None:
    with running(_options(pki.files)) as server:
        ctx = client_context(pki.ca_file)
        reloader = server.config.reloader
        assert reloader is not None
        other = pki.ca.issue("bond-injector.webhook.svc")
        # A new certificate with the old key: load_cert_chain refuses it.
        secret_volume_swap(pki.mount, other, 2, key=pki.first.key_pem)
        for _ in range(3):
            assert peer_serial(server.port, ctx) == pki.first.serial
        assert reloader.last_error is not None and "cannot use" in reloader.last_error
        assert request(server.port, ctx, "GET", "/readyz")[0] == 200
        fixed = pki.ca.issue("bond-injector.webhook.svc")
        secret_volume_swap(pki.mount, fixed, 3)
        poll(lambda: peer_serial(server.port, ctx) == fixed.serial, what="the fixed pair")
        assert reloader.last_error is None


def test_a_bad_pair_at_start_is_an_error(pki: Pki, tmp_path: Path) -> None:
    other = pki.ca.issue("x")
    cert, _ = other.write(tmp_path / "bad", "tls")
    with pytest.raises(TlsError, match="cannot use"):
        CertificateReloader(TlsFiles(cert, pki.mount / "tls.key"))


def _refused(port: int, ctx: ssl.SSLContext) -> bool:
    # With TLS 1.3 the server checks the client certificate after the client thinks the handshake
    # is done, so the refusal shows on the first read.
    try:
        request(port, ctx, "GET", "/healthz")
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def test_mutual_tls(pki: Pki, tmp_path: Path) -> None:
    apiserver_ca, stranger_ca = CA("apiserver-client-ca"), CA("stranger")
    client_ca = apiserver_ca.write(tmp_path / "client-ca.crt")
    good = apiserver_ca.issue("kube-apiserver", server=False).write(tmp_path / "good", "client")
    bad = stranger_ca.issue("kube-apiserver", server=False).write(tmp_path / "bad", "client")
    files = TlsFiles(pki.mount / "tls.crt", pki.mount / "tls.key", client_ca)
    with running(_options(files)) as server:
        assert request(server.port, client_context(pki.ca_file, good), "GET", "/healthz")[0] == 200
        # The API server's admission call, with the client certificate of its kubeconfig.
        status, body = request(
            server.port, client_context(pki.ca_file, good), "POST", "/mutate", review(pod())
        )
        assert (status, json.loads(body)["response"]["allowed"]) == (200, True)
        assert _refused(server.port, client_context(pki.ca_file))
        assert _refused(server.port, client_context(pki.ca_file, bad))
        # Renewal keeps client verification on.
        renewed = pki.ca.issue("bond-injector.webhook.svc")
        secret_volume_swap(pki.mount, renewed, 2)
        ctx = client_context(pki.ca_file, good)
        poll(lambda: peer_serial(server.port, ctx) == renewed.serial, what="the renewed cert")
        assert _refused(server.port, client_context(pki.ca_file))


def test_health_port_serves_probes_without_client_certificates(pki: Pki, tmp_path: Path) -> None:
    client_ca = CA_CLIENT.write(tmp_path / "client-ca.crt")
    files = TlsFiles(pki.mount / "tls.crt", pki.mount / "tls.key", client_ca)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        health_port = s.getsockname()[1]
    options = replace(_options(files), health_port=health_port)
    with running(options) as server:
        assert _refused(server.port, client_context(pki.ca_file))

        def get(path: str) -> int | None:
            conn = http.client.HTTPConnection("127.0.0.1", health_port, timeout=5)
            try:
                conn.request("GET", path)
                return conn.getresponse().status
            except OSError:
                return None
            finally:
                conn.close()

        poll(lambda: get("/healthz") == 200, what="the health port")
        assert get("/readyz") == 200
        assert get("/metrics") == 200
        assert get("/mutate") == 404, "admissions only over TLS"
        # ... and metrics only here, where a NetworkPolicy can admit the monitoring namespace.
        good = CA_CLIENT.issue("kube-apiserver", server=False).write(tmp_path / "good", "client")
        tls = client_context(pki.ca_file, good)
        assert request(server.port, tls, "GET", "/metrics")[0] == 404
        assert request(server.port, tls, "GET", "/readyz")[0] == 200


def test_missing_files_keep_the_current_pair(pki: Pki) -> None:
    reloader = CertificateReloader(pki.files, check_interval=0.0)
    (pki.mount / "..data").unlink()  # a volume caught between two updates
    reloader.check()
    assert reloader.last_error is not None and "cannot stat" in reloader.last_error
    assert reloader.reloads == 0


def test_checks_are_throttled_by_the_interval(pki: Pki) -> None:
    now = [0.0]
    reloader = CertificateReloader(pki.files, check_interval=5.0, clock=lambda: now[0])
    secret_volume_swap(pki.mount, pki.ca.issue("renewed"), 2)
    now[0] = 4.9
    reloader.check()
    assert reloader.reloads == 0
    now[0] = 5.0
    reloader.check()
    assert reloader.reloads == 1
