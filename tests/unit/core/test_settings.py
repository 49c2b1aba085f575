from __future__ import annotations

import os
from pathlib import Path

import pytest
from settings_names import env_names

from soundscape.errors import UserError
from soundscape.settings import load_settings


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_KAFKA__PORT", "19092")
    monkeypatch.setenv("SOUNDSCAPE_WORKER__BATCH_SIZE", "64")
    settings = load_settings()
    assert settings.kafka.port == 19092
    assert settings.worker.batch_size == 64


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "soundscape.toml"
    config.write_text('[topics]\npartitions = 12\n[postgres]\ndatabase = "field"\n')
    monkeypatch.setenv("SOUNDSCAPE_CONFIG", str(config))
    monkeypatch.setenv("SOUNDSCAPE_POSTGRES__DATABASE", "from-env")
    settings = load_settings()
    assert settings.topics.partitions == 12
    assert settings.postgres.database == "from-env"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SOUNDSCAPE_POSTGRES__URL", "postgresql://u:secret@db/x")
    shown = load_settings().masked()
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["postgres"]["url"] == "***"
    assert "hunter2" not in repr(shown) and "secret" not in repr(shown)


def test_bad_values_give_one_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_KAFKA__PORT", "70000")
    monkeypatch.setenv("SOUNDSCAPE_WORKER__BATCH_SIZE", "zero")
    with pytest.raises(UserError) as info:
        load_settings()
    text = str(info.value)
    assert "SOUNDSCAPE_KAFKA__PORT" in text and "SOUNDSCAPE_WORKER__BATCH_SIZE" in text


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOUNDSCAPE_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(UserError, match="not a file"):
        load_settings()


def test_the_configuration_how_to_lists_every_setting() -> None:
    """The hand-written table with remarks (docs/how-to/configure.md); the generated
    reference is checked by tests/unit/test_docs_reference.py."""
    from soundscape.settings import Settings

    readme = (Path(__file__).parents[3] / "docs" / "how-to" / "configure.md").read_text()
    topic_names = {"AUDIO", "DETECTIONS", "AUDIO_DLQ", "HEARTBEATS", "DRIFT"}
    missing = [
        env for env in env_names(Settings)
        if f"`{env}`" not in readme
        and not (env.startswith("SOUNDSCAPE_TOPICS__") and env.split("__")[1] in topic_names)
    ]
    assert not missing, f"docs/how-to/configure.md's table lacks {missing}"


def test_settings_env_round_trips_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from soundscape.settings import settings_env

    monkeypatch.setenv("SOUNDSCAPE_POSTGRES__URL", "postgresql://w:secret@db/x")
    monkeypatch.setenv("SOUNDSCAPE_DRIFT__HOP_S", "300")
    monkeypatch.setenv("SOUNDSCAPE_DRIFT__WINDOW_S", "600")
    original = load_settings()
    env = settings_env(original)
    assert env["SOUNDSCAPE_POSTGRES__URL"] == "postgresql://w:secret@db/x"
    for key in list(os.environ):
        if key.startswith("SOUNDSCAPE_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original
