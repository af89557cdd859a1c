"""HTTPS for signaling: a local certificate authority and a server certificate it signs.

Phones give web pages a microphone only over HTTPS. ``voxrelay up --tls`` therefore
serves the page with a certificate kept in ``<data dir>/tls/``:

- ``ca.pem`` — a local CA, created once (10 years). This is the file a phone or laptop
  trusts, once; ``ca-key.pem`` never leaves the machine.
- ``cert.pem`` / ``key.pem`` — the server certificate (ECDSA P-256, 397 days) for every
  name and address this machine answers on. It is issued again, by the same CA, when it
  nears expiry or when the machine gains an address it does not cover (a new LAN lease),
  so a device that trusted the CA keeps trusting the server.

``VOXRELAY_TLS_CERT`` / ``VOXRELAY_TLS_KEY`` point at a certificate of the user's own
instead; then nothing is created.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import ifaddr
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import SignalingConfig

logger = logging.getLogger(__name__)

CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 397
"Apple platforms refuse server certificates valid for more than 398 days."
RENEW_BEFORE_DAYS = 30
ORGANIZATION = "voxrelay"
_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")

Name = ipaddress.IPv4Address | ipaddress.IPv6Address | str


class TlsError(Exception):
    """A certificate or key that cannot be used; the message names the file."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None
    "The CA to trust on other devices (None for a user-supplied certificate)."


def server_context(config: SignalingConfig) -> ssl.SSLContext:
    """The TLS context signaling serves with (creating the certificate when needed)."""
    if config.tls_cert:
        files = TlsFiles(Path(config.tls_cert), Path(config.tls_key), None)
    else:
        files = ensure_certificate(Path(config.data_dir) / "tls", server_names(config))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot use the certificate {files.cert} with the key {files.key}: "
                       f"{e}") from e
    logger.info("TLS with %s%s", files.cert, f" (trust {files.ca} on other devices)"
                if files.ca else "")
    return context


def server_names(config: SignalingConfig) -> list[Name]:
    """Every name and address a browser may use to reach this machine."""
    hostname = socket.gethostname()
    names: list[str] = ["localhost", hostname, f"{hostname}.local", "127.0.0.1", "::1"]
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            names.append(address.split("%")[0])  # no IPv6 scope ids
    if config.http_host not in ("", "0.0.0.0", "::"):
        names.append(config.http_host)
    if config.public_url:
        names.append(urlsplit(config.public_url).hostname or "")
    return _unique(_parse_name(n) for n in names if n)


def ensure_certificate(directory: Path, names: Sequence[Name],
                       now: datetime.datetime | None = None) -> TlsFiles:
    """The CA and a current server certificate for ``names`` in ``directory``."""
    now = now or datetime.datetime.now(datetime.UTC)
    files = TlsFiles(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _load_or_create_ca(directory, now)
    if _current(files.cert, ca_cert, names, now):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _server_certificate(key, ca_cert, ca_key, names, now)
    _write(files.key, _key_pem(key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM)
           + ca_cert.public_bytes(serialization.Encoding.PEM))
    logger.info("issued a server certificate for %s, valid until %s",
                ", ".join(map(str, names)), cert.not_valid_after_utc.date())
    return files


def _load_or_create_ca(directory: Path, now: datetime.datetime
                       ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as e:
            raise TlsError(f"cannot read the local CA in {directory} ({e}); delete ca.pem "
                           "and ca-key.pem to create a new one") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{key_path} is not an EC key; delete it and ca.pem")
        if cert.not_valid_after_utc > now + datetime.timedelta(days=RENEW_BEFORE_DAYS):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, f"voxrelay local CA ({socket.gethostname()})"),
    ])
    cert = (
        _builder(subject, subject, key.public_key(), now, CA_VALID_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    logger.info("created a local certificate authority in %s", cert_path)
    return cert, key


def _server_certificate(key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                        ca_key: ec.EllipticCurvePrivateKey, names: Sequence[Name],
                        now: datetime.datetime) -> x509.Certificate:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, str(names[0]) if names else "localhost"),
    ])
    alt_names = [x509.IPAddress(n) if not isinstance(n, str) else x509.DNSName(n) for n in names]
    return (
        _builder(subject, ca_cert.subject, key.public_key(), now, CERT_VALID_DAYS)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime, days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _current(path: Path, ca_cert: x509.Certificate, names: Sequence[Name],
             now: datetime.datetime) -> bool:
    """Does the certificate at ``path`` exist, come from this CA, cover ``names``, and last?"""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca_cert)  # by this CA's key, not an older one's
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = set(covered.get_values_for_type(x509.DNSName))
    have |= set(covered.get_values_for_type(x509.IPAddress))
    return ((path.parent / "key.pem").exists()
            and set(names) <= have
            and cert.not_valid_after_utc > now + datetime.timedelta(days=RENEW_BEFORE_DAYS))


def _parse_name(name: str) -> Name | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        name = name.lower()
        return name if _DNS_NAME.fullmatch(name) else None  # e.g. a host name with "_"


def _unique(names: Iterable[Name | None]) -> list[Name]:
    return [n for n in dict.fromkeys(names) if n is not None]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically (a crash never leaves half a key); keys readable by the owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
