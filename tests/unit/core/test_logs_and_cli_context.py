"""Structured logs and the helpers every room's command line shares."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click
import psycopg
import pytest
import structlog
from click.testing import CliRunner

from soundscape.cli_context import App, current_settings, database_errors, echo_json, need_module
from soundscape.errors import ServiceError, UserError
from soundscape.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests reconfigure logging; later tests get the configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_json_logs_are_one_object_per_line_with_level_time_and_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    log = get_logger("soundscape.test", room="core")
    log.info("chunk scored", station="pi-1", batch=3)
    log.debug("not shown at info")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "chunk scored" and line["level"] == "info"
    assert (line["station"], line["batch"], line["room"]) == ("pi-1", 3, "core")
    assert line["timestamp"].endswith("Z")


def test_a_module_logger_follows_configuration_made_after_import(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = get_logger("soundscape.late")
    configure_logging("warning", "json")
    log.info("hidden")
    log.warning("shown")
    events = [json.loads(x)["event"] for x in capsys.readouterr().err.splitlines() if x]
    assert events == ["shown"]


def test_commands_share_one_lazily_loaded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_LOG_FORMAT", "json")
    monkeypatch.setenv("SOUNDSCAPE_TOPICS__AUDIO", "custom.audio")
    seen = []

    @click.command()
    def show() -> None:
        first, second = current_settings(), current_settings()
        seen.append(first is second)
        echo_json({"audio": first.topics.audio})

    result = CliRunner().invoke(show, [])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"audio": "custom.audio"}
    assert seen == [True]


def test_a_command_with_no_sink_wired_says_how_to_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(App, "result_sinks", None)
    with pytest.raises(ServiceError, match="no result sink") as caught:
        App().open_result_sink("test")
    assert "soundscape" in (caught.value.hint or "")


def test_unreachable_database_is_one_message() -> None:
    with pytest.raises(ServiceError, match="cannot reach the database") as caught:
        with database_errors():
            psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    assert "infra status" in (caught.value.hint or "")


def test_a_missing_extra_names_the_install_command() -> None:
    need_module("json", "dev")
    with pytest.raises(UserError, match="needs no_such_module_x") as caught:
        need_module("no_such_module_x", "train")
    assert "soundscape[train]" in (caught.value.hint or "")
