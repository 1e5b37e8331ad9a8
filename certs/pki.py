"""Certificate decisions for the webhook: make a CA and a serving pair, and judge stored ones.

Pure: takes PEM bytes, names and a clock value, returns PEM bytes and verdicts. No Kubernetes
client, no files, no logging (so no private key can reach a log from here).
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Backdate notBefore a little so a node whose clock lags the signer's still accepts a fresh pair.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM encoded."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # repr=False: a stray print of the pair never shows the key


class Verdict(enum.Enum):
    """What `ensure` must do with what it found."""

    HEALTHY = "healthy"
    RENEW_SERVING = "renew-serving"  # the CA is fine: sign a new serving certificate with it
    NEW_CA = "new-ca"  # the CA is missing, broken or expiring: start over


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reasons: tuple[str, ...] = ()


def parse_duration(text: str) -> dt.timedelta:
    """'30d', '12h', '2w', '90m', '45s' -> timedelta; the unit is required."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"duration {text!r} is not understood; write a whole number and one unit of "
            "s, m, h, d or w, for example 30d"
        )
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signing only: EC keys do no key encipherment; a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def service_dns_names(
    service: str, namespace: str, cluster_domain: str = "cluster.local"
) -> list[str]:
    """The names a client may use to reach a Service, from the shortest to the fully qualified."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def generate_ca(common_name: str, now: dt.datetime, validity: dt.timedelta) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def generate_serving(
    ca: KeyPair,
    dns_names: Sequence[str],
    ips: Sequence[str],
    now: dt.datetime,
    validity: dt.timedelta,
) -> KeyPair:
    """A server certificate signed by `ca` whose SANs are exactly `dns_names` and `ips`."""
    if not dns_names and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    common_name = dns_names[0] if dns_names else ips[0]
    return issue_certificate(
        ca, common_name, now, validity, dns_names=dns_names, ips=ips, usage="server"
    )


def issue_certificate(
    ca: KeyPair,
    common_name: str,
    now: dt.datetime,
    validity: dt.timedelta,
    *,
    organization: str | None = None,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
    usage: str = "server",
) -> KeyPair:
    """A leaf certificate signed by `ca`: `usage` "server" (TLS server) or "client" (TLS client,
    `organization` becoming the Kubernetes group), with exactly the SANs given."""
    if usage not in ("server", "client"):
        raise ValueError(f"usage {usage!r} is neither 'server' nor 'client'")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key; run `bond-injector certs rotate --new-ca`")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    extended_usage = (
        ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    # The certificate must not outlive the CA that signs it.
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([extended_usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(_cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key))


def assess_ca(ca: KeyPair | None, now: dt.datetime, renew_before: dt.timedelta) -> list[str]:
    """Why the CA cannot be kept (empty: it can)."""
    if ca is None:
        return ["no CA is stored"]
    try:
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
    except ValueError as exc:
        return [f"the stored CA does not parse ({_first_line(exc)})"]
    problems = []
    if not _same_public_key(cert, key):
        problems.append("the CA certificate does not match the CA key")
    problems += _validity_problems("CA certificate", cert, now, renew_before)
    return problems


def assess_serving(
    serving: KeyPair | None,
    ca_cert_pem: bytes,
    *,
    dns_names: Iterable[str],
    ips: Iterable[str],
    now: dt.datetime,
    renew_before: dt.timedelta,
) -> list[str]:
    """Why the serving pair cannot be kept (empty: it can).

    It can be kept when it parses, its key matches, `ca_cert_pem` signed it, it covers every
    wanted name and address, and it is valid for longer than `renew_before`.
    """
    if serving is None:
        return ["no serving certificate is stored"]
    try:
        cert = x509.load_pem_x509_certificate(serving.cert_pem)
        key = serialization.load_pem_private_key(serving.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as exc:
        return [f"the stored serving certificate does not parse ({_first_line(exc)})"]
    problems = []
    if not _same_public_key(cert, key):
        problems.append("the serving certificate does not match its key")
    if not _signed_by(cert, ca_cert):
        problems.append("the serving certificate was not signed by the stored CA")
    missing = missing_names(serving.cert_pem, dns_names, ips)
    if missing:
        problems.append("the serving certificate does not cover " + ", ".join(missing))
    problems += _validity_problems("serving certificate", cert, now, renew_before)
    return problems


def assess(
    ca: KeyPair | None,
    serving: KeyPair | None,
    *,
    dns_names: Sequence[str],
    ips: Sequence[str],
    now: dt.datetime,
    renew_before: dt.timedelta,
) -> Assessment:
    """The whole decision of `ensure`: keep everything, renew the serving pair, or start over."""
    ca_problems = assess_ca(ca, now, renew_before)
    if ca_problems or ca is None:
        return Assessment(Verdict.NEW_CA, tuple(ca_problems))
    serving_problems = assess_serving(
        serving,
        ca.cert_pem,
        dns_names=dns_names,
        ips=ips,
        now=now,
        renew_before=renew_before,
    )
    if serving_problems:
        return Assessment(Verdict.RENEW_SERVING, tuple(serving_problems))
    return Assessment(Verdict.HEALTHY)


def missing_names(cert_pem: bytes, dns_names: Iterable[str], ips: Iterable[str]) -> list[str]:
    """The wanted DNS names and IPs that the certificate's SANs lack (exact names, no wildcards)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        have_dns: set[str] = set()
        have_ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    else:
        have_dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        have_ips = {
            ip
            for ip in san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        }
    missing = [n for n in dns_names if n.lower() not in have_dns]
    missing += [ip for ip in ips if ipaddress.ip_address(ip) not in have_ips]
    return missing


def ca_bundle(current_ca_pem: bytes, *others: bytes | None, now: dt.datetime) -> bytes:
    """The CAs a client should trust: the current one first, then any other still-valid one.

    Keeping the previous CA in the bundle while a new one takes over means a webhook that still
    serves a certificate of the old CA is trusted until it reloads.
    """
    bundle = [_normalise_pem(current_ca_pem)]
    for pem in others:
        if not pem:
            continue
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            continue
        normalised = _normalise_pem(pem)
        if cert.not_valid_after_utc > now and normalised not in bundle:
            bundle.append(normalised)
    return b"".join(bundle)


def not_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def _validity_problems(
    what: str, cert: x509.Certificate, now: dt.datetime, renew_before: dt.timedelta
) -> list[str]:
    if now < cert.not_valid_before_utc:
        return [f"the {what} is not valid before {cert.not_valid_before_utc.isoformat()}"]
    if now >= cert.not_valid_after_utc:
        return [f"the {what} expired at {cert.not_valid_after_utc.isoformat()}"]
    if cert.not_valid_after_utc - now <= renew_before:
        return [
            f"the {what} expires at {cert.not_valid_after_utc.isoformat()}, "
            f"within the renewal threshold of {renew_before}"
        ]
    return []


def _same_public_key(cert: x509.Certificate, key: object) -> bool:
    public_key = getattr(key, "public_key", None)
    if public_key is None:
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    cert_spki = cert.public_key().public_bytes(der, fmt)
    key_spki: bytes = public_key().public_bytes(der, fmt)
    return cert_spki == key_spki


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _normalise_pem(pem: bytes) -> bytes:
    return pem.strip() + b"\n"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
