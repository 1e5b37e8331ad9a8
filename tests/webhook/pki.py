"""Throwaway CAs and certificates for the TLS tests (made with `cryptography`, in tmp)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certs import pki


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


class CA:
    """A throwaway CA issuing through the product's own `certs.pki` (so the TLS tests exercise the
    certificates bond-injector really makes)."""

    def __init__(self, name: str) -> None:
        self._pair = pki.generate_ca(name, dt.datetime.now(dt.UTC), dt.timedelta(days=1))
        self.pem = self._pair.cert_pem

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem)
        return path

    def issue(
        self, common_name: str, *, server: bool = True, days: int = 1, ago: int = 0
    ) -> Issued:
        """A certificate valid for `days` from `ago` days back (ago > days: already expired)."""
        pair = pki.issue_certificate(
            self._pair,
            common_name,
            dt.datetime.now(dt.UTC) - dt.timedelta(days=ago),
            dt.timedelta(days=days),
            dns_names=("localhost",) if server else (),
            ips=("127.0.0.1",) if server else (),
            usage="server" if server else "client",
        )
        serial = x509.load_pem_x509_certificate(pair.cert_pem).serial_number
        return Issued(pair.cert_pem, pair.key_pem, serial)


def secret_volume_swap(
    mount: Path, pair: Issued, generation: int, key: bytes | None = None
) -> None:
    """Update tls.crt/tls.key the way the kubelet updates a Secret volume: one ..data rename."""
    target = mount / f"..gen{generation}"
    target.mkdir()
    (target / "tls.crt").write_bytes(pair.cert_pem)
    (target / "tls.key").write_bytes(pair.key_pem if key is None else key)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, mount / "..data")
    for name in ("tls.crt", "tls.key"):
        link = mount / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
