"""Serving TLS that follows certificate renewals without a restart.

The listening socket keeps one base SSLContext; its SNI callback, run on every handshake, checks
the files (a cheap stat, at most once per `check_interval`) and points the connection at the
newest context. A new context is built only from a pair that loads; a mismatched or half-written
pair is logged and the previous one keeps serving.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int, int], ...]


class TlsError(RuntimeError):
    """No usable serving pair."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # verify client certificates (mTLS from the API server)

    def paths(self) -> tuple[Path, ...]:
        return (
            (self.cert, self.key)
            if self.client_ca is None
            else (self.cert, self.key, self.client_ca)
        )


def build_context(files: TlsFiles) -> tuple[ssl.SSLContext, float]:
    """A server context for the pair (and client CA), and the certificate's notAfter."""
    # Only the workers read notAfter: cryptography costs ~8 MiB that `serve --workers N`'s
    # supervisor, which checks the pair with check_pair(), does not pay.
    from cryptography import x509  # noqa: PLC0415

    ctx = check_pair(files)
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot use {files.cert} with {files.key}: {exc}") from None
    return ctx, cert.not_valid_after_utc.timestamp()


def check_pair(files: TlsFiles) -> ssl.SSLContext:
    """A server context for the pair (and client CA), with the standard library's ssl alone."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(str(files.cert), str(files.key))
        if files.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(files.client_ca))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TlsError(f"cannot use {files.cert} with {files.key}: {exc}") from None
    return ctx


class CertificateReloader:
    def __init__(
        self,
        files: TlsFiles,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = files
        self._interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        signature = self._signature()
        self._current, self._not_after = build_context(files)  # fatal at start: raise
        self._signature_loaded: Signature | None = signature
        self._signature_refused: Signature | None = None
        self._checked = clock()
        self.reloads = 0
        self.last_error: str | None = None
        self.context = self._current  # the listening socket's context
        self.context.sni_callback = self._on_handshake

    @property
    def not_after(self) -> float:
        return self._not_after

    def check(self) -> None:
        """Reload if the files changed since the last look (and the interval has passed)."""
        now = self._clock()
        if now - self._checked < self._interval:
            return
        with self._lock:
            self._checked = now
            try:
                signature = self._signature()
            except OSError as exc:
                self.last_error = f"cannot stat the certificate files: {exc}"
                return
            if signature in (self._signature_loaded, self._signature_refused):
                return
            try:
                context, not_after = build_context(self._files)
            except TlsError as exc:
                self._signature_refused = signature
                self.last_error = str(exc)
                log.error("keeping the current certificate: %s", exc)
                return
            # Files swapped again while loading: use what loaded, look again next time.
            try:
                again = self._signature()
            except OSError:
                again = None
            self._signature_loaded = signature if signature == again else None
            self._current, self._not_after = context, not_after
            self.last_error = None
            self.reloads += 1
            log.info("loaded renewed serving certificate %s", self._files.cert)

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        self.check()
        current = self._current
        if connection.context is not current:
            connection.context = current

    def _signature(self) -> Signature:
        out = []
        for path in self._files.paths():
            st = os.stat(path)
            out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)
