"""The deployment's own certificate authority, and the server certificates it signs.

    certs/ca.pem, certs/ca.key          the CA (10 years); the key never leaves this machine
    certs/server.pem, certs/server.key  the broker's and PostgreSQL's certificate (825 days)

Keys are written 0600 before a byte of them is; certificates are public (0644). Clients
trust `ca.pem` only (stations get it in their config bundle), so a certificate the CA
did not sign is refused even when a public CA did. A server certificate is renewed when
it is within `RENEW_BEFORE` of expiry, when the names it must cover change, or on
`--rotate`; the CA only on `--rotate-ca`, after which every station needs its new bundle.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from soundscape.settings import Settings

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)
#: Names every server certificate covers: the services listen on loopback by default.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPaths:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"


def cert_paths(settings: Settings) -> CertPaths:
    return CertPaths(settings.state_dir / "certs")


def server_names(settings: Settings) -> list[str]:
    """Loopback plus the hosts the broker and database listen on or are reached by."""
    names = list(LOOPBACK_NAMES)
    kafka = settings.kafka
    for host in (kafka.host, kafka.stations_host, kafka.stations_advertised_host,
                 settings.postgres.host, *settings.security.server_names):
        if host and host not in names and host not in ("0.0.0.0", "::"):
            names.append(host)
    return names


def ensure_certs(settings: Settings, *, rotate: bool = False,
                 rotate_ca: bool = False) -> dict[str, Any]:
    """Make what is missing or due; returns what was done and each certificate's facts."""
    paths = cert_paths(settings)
    paths.folder.mkdir(parents=True, exist_ok=True)
    paths.folder.chmod(0o755)
    now = dt.datetime.now(dt.UTC)
    done: list[str] = []
    ca = _load(paths.ca_cert, paths.ca_key)
    if rotate_ca or ca is None or _due(ca[0], now):
        ca = _new_ca(settings, now)
        _write(paths.ca_key, paths.ca_cert, *ca)
        done.append("ca")
        rotate = True  # a new CA invalidates the old server certificate
    names = server_names(settings)
    server = _load(paths.server_cert, paths.server_key)
    if (rotate or server is None or _due(server[0], now) or _names(server[0]) != set(names)
            or server[0].issuer != ca[0].subject):
        server = _new_server(ca, names, now)
        _write(paths.server_key, paths.server_cert, *server)
        done.append("server")
    return {"made": done, "folder": str(paths.folder),
            "ca": _facts(ca[0]), "server": _facts(server[0]) | {"names": names}}


# ---- making ------------------------------------------------------------------------------
Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _new_ca(settings: Settings, now: dt.datetime) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Soundscape"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Soundscape CA ({settings.security.deployment})"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(ca: Pair, names: list[str], now: dt.datetime) -> Pair:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# ---- reading and writing -----------------------------------------------------------------
def _load(cert_path: Path, key_path: Path) -> Pair | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _write(key_path: Path, cert_path: Path, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> None:
    # PKCS#8 PEM: what both PostgreSQL and Kafka's PEM key stores read.
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_private(key_path, key_pem)
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def write_private(path: Path, data: bytes) -> None:
    """Write a secret so that no other user can read it at any moment (0600 from creation)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc - now < RENEW_BEFORE


def _names(cert: x509.Certificate) -> set[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in alt.get_values_for_type(x509.DNSName)} | {
        str(v) for v in alt.get_values_for_type(x509.IPAddress)}


def _facts(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":"),
    }
