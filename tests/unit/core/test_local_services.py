"""Finding the local broker and database from their state files (soundscape.local_services)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundscape.database import database_url
from soundscape.errors import ServiceError
from soundscape.kafka_clients import bootstrap_servers
from soundscape.local_services import (
    kafka_state_file,
    local_kafka_address,
    local_postgres_url,
    postgres_credentials_file,
    postgres_state_file,
)
from soundscape.settings import Settings


def _settings(tmp_path: Path, **postgres: object) -> Settings:
    return Settings(state_dir=tmp_path, postgres=postgres)  # type: ignore[arg-type]


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_nothing_started_means_none_and_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert local_kafka_address(settings) is None
    assert local_postgres_url(settings) is None
    with pytest.raises(ServiceError, match="infra up"):
        bootstrap_servers(settings)
    with pytest.raises(ServiceError, match="infra up"):
        database_url(settings)


def test_addresses_come_from_the_state_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _write(kafka_state_file(settings), {"port": 39092, "controller_port": 39093})
    _write(postgres_state_file(settings), {"port": 35432})
    _write(postgres_credentials_file(settings), {"writer_password": "w/p@ss", "reader_password": "r"})
    assert bootstrap_servers(settings) == f"{settings.kafka.host}:39092"
    url = database_url(settings)
    assert url.endswith(f"@{settings.postgres.host}:35432/{settings.postgres.database}")
    assert "w%2Fp%40ss" in url  # quoted, so a password cannot break the URL
    assert database_url(settings, "reader").startswith(f"postgresql://{settings.postgres.reader_user}:r@")


def test_configured_passwords_win_and_missing_ones_give_none(tmp_path: Path) -> None:
    settings = _settings(tmp_path, writer_password="from-settings")
    _write(postgres_state_file(settings), {"port": 35432})
    assert ":from-settings@" in (local_postgres_url(settings, "writer") or "")
    assert local_postgres_url(settings, "reader") is None  # no credentials file yet


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_corrupt_state_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    settings = _settings(tmp_path)
    kafka_state_file(settings).parent.mkdir(parents=True)
    kafka_state_file(settings).write_text(content)
    with pytest.raises(ServiceError, match="infra reset"):
        local_kafka_address(settings)
