"""The deployment's CA: made once, the server certificate signed by it, renewed when due,
when its names change or on request; keys private from the moment they exist."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from soundscape.infra import certs
from soundscape.infra.certs import cert_paths, ensure_certs
from soundscape.settings import Settings


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _settings(tmp_path: Path, **security: object) -> Settings:
    settings = Settings(state_dir=tmp_path)
    return settings.model_copy(update={"security": settings.security.model_copy(update=security)})


def test_made_once_signed_by_the_ca_and_private(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = ensure_certs(settings)
    assert first["made"] == ["ca", "server"]
    paths = cert_paths(settings)
    ca, server = _cert(paths.ca_cert), _cert(paths.server_cert)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(alt.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.ca_cert.stat().st_mode) == 0o644
    again = ensure_certs(settings)
    assert again["made"] == [] and again["server"]["sha256"] == first["server"]["sha256"]


def test_new_names_rotate_and_rotate_ca(tmp_path: Path) -> None:
    first = ensure_certs(_settings(tmp_path))
    named = ensure_certs(_settings(tmp_path, server_names=["broker.example.org", "10.0.0.5"]))
    assert named["made"] == ["server"] and "broker.example.org" in named["server"]["names"]
    assert named["ca"]["sha256"] == first["ca"]["sha256"]
    rotated = ensure_certs(_settings(tmp_path, server_names=["broker.example.org", "10.0.0.5"]),
                           rotate=True)
    assert rotated["made"] == ["server"]
    assert rotated["server"]["sha256"] != named["server"]["sha256"]
    new_ca = ensure_certs(_settings(tmp_path), rotate_ca=True)
    assert new_ca["made"] == ["ca", "server"] and new_ca["ca"]["sha256"] != first["ca"]["sha256"]
    paths = cert_paths(_settings(tmp_path))
    _cert(paths.server_cert).verify_directly_issued_by(_cert(paths.ca_cert))


def test_a_certificate_near_expiry_is_renewed(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certs, "SERVER_LIFETIME", dt.timedelta(days=10))
    first = ensure_certs(_settings(tmp_path))
    assert ensure_certs(_settings(tmp_path))["made"] == ["server"]  # 10 days < 30 days ahead
    assert first["made"] == ["ca", "server"]


@pytest.mark.parametrize("damage", ["garbage", "other key"])
def test_a_damaged_or_mismatched_key_is_replaced(tmp_path: Path, damage: str) -> None:
    settings = _settings(tmp_path)
    ensure_certs(settings)
    paths = cert_paths(settings)
    if damage == "garbage":
        paths.server_key.write_bytes(b"not a key")
    else:
        paths.server_key.write_bytes(paths.ca_key.read_bytes())
    assert ensure_certs(settings)["made"] == ["server"]
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600


def test_the_names_stations_dial_are_covered(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={
        "stations_host": "0.0.0.0", "stations_advertised_host": "broker.example.org"})})
    names = certs.server_names(settings)
    assert "broker.example.org" in names and "0.0.0.0" not in names
    assert ensure_certs(settings)["server"]["names"] == names
