"""Client configs from settings: SASL needs a user and password, and a relative CA path
is read beside the config file that names it (a service's unpacked bundle)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from soundscape.errors import UserError
from soundscape.kafka_clients import common_config
from soundscape.settings import Settings

pytestmark = pytest.mark.unit


def _settings(**kafka: object) -> Settings:
    base = Settings()
    return base.model_copy(update={"kafka": base.kafka.model_copy(update={
        "bootstrap_servers": "broker.example:9093", **kafka})})


def test_a_relative_ca_is_read_beside_the_config_file(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "unpacked"
    bundle.mkdir()
    (bundle / "soundscape.toml").write_text("")
    (bundle / "ca.pem").write_text("ca")
    monkeypatch.chdir(tmp_path)  # not where the CA is
    monkeypatch.setenv("SOUNDSCAPE_CONFIG", str(bundle / "soundscape.toml"))
    config = common_config(_settings(
        security_protocol="SASL_SSL", sasl_username="worker.gpu1",
        sasl_password=SecretStr("pw"), ssl_ca_location=Path("ca.pem")))
    assert config["ssl.ca.location"] == str(bundle / "ca.pem")
    assert config["sasl.username"] == "worker.gpu1" and config["sasl.mechanism"] == "SCRAM-SHA-512"


def test_absolute_and_working_folder_cas_are_kept(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SOUNDSCAPE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("ca")
    assert common_config(_settings(ssl_ca_location=Path("ca.pem")))["ssl.ca.location"] == "ca.pem"
    absolute = tmp_path / "elsewhere.pem"
    assert common_config(_settings(ssl_ca_location=absolute))["ssl.ca.location"] == str(absolute)


def test_sasl_without_a_password_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="needs a SASL user and password"):
        common_config(_settings(security_protocol="SASL_SSL", sasl_username="x"))
