"""The drift commands' help, thresholds and input errors (no service needed)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from soundscape.app.cli import cli
from soundscape.processors.drift.checks import CHECKS
from soundscape.settings import DriftSettings


def test_thresholds_list_every_check_with_its_setting() -> None:
    result = CliRunner().invoke(cli, ["drift", "thresholds", "--json"],
                                env={"SOUNDSCAPE_DRIFT__NOISE_FLOOR_DB": "9"})
    assert result.exit_code == 0, result.output
    listed = {row["check"]: row for row in json.loads(result.output)}
    assert set(listed) == set(CHECKS)
    assert listed["noise_floor"]["threshold"] == 9.0
    for row in listed.values():
        field = row["setting"].removeprefix("SOUNDSCAPE_DRIFT__").lower()
        assert field in DriftSettings.model_fields


def test_every_command_has_help() -> None:
    for args in (["drift"], ["drift", "run"], ["drift", "check"], ["drift", "thresholds"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_bad_times_and_ranges_are_refused_before_any_work() -> None:
    result = CliRunner().invoke(cli, ["drift", "check", "--since", "soonish"])
    assert result.exit_code == 2 and "ISO 8601" in result.output
    result = CliRunner().invoke(cli, ["drift", "check", "--since", "2026-06-01T05:00Z",
                                      "--until", "2026-06-01T04:00Z"])
    assert result.exit_code != 0 and "not after" in str(result.exception)
