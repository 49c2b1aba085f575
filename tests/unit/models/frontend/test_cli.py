"""The `soundscape frontend` and `soundscape synth` commands, end to end in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from soundscape.app.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_everywhere(runner: CliRunner) -> None:
    for args in (["frontend"], ["frontend", "build"], ["frontend", "check"], ["frontend", "parity"],
                 ["frontend", "bench"], ["synth"], ["synth", "chunks"], ["synth", "archive"],
                 ["synth", "species"]):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage:" in result.output


def test_build_writes_a_checked_graph_and_refuses_to_overwrite(runner: CliRunner,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "frontend.onnx"
    result = runner.invoke(cli, ["frontend", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "all have CUDA kernels" in result.output
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["waveform", "mel", "mel_aug"]
    again = runner.invoke(cli, ["frontend", "build", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in str(again.exception)
    check = runner.invoke(cli, ["frontend", "check", "--model", str(out), "--json"])
    assert check.exit_code == 0 and json.loads(check.output)["ok"] is True


def test_check_rejects_a_file_that_is_not_onnx(runner: CliRunner, tmp_path: Path) -> None:
    bogus = tmp_path / "frontend.onnx"
    bogus.write_text("not a model")
    result = runner.invoke(cli, ["frontend", "check", "--model", str(bogus)])
    assert result.exit_code != 0 and "cannot read" in str(result.exception)


def test_parity_prints_every_case_and_passes(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["frontend", "parity", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and len(data["cases"]) >= 17
    assert data["tolerances"] == {"waveform": 1e-4, "mel": 0.05, "mel_aug": 0.05}


def test_bench_reports_both_forms_and_the_ratio(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["frontend", "bench", "--chunks", "2", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["onnx_cpu_chunks_per_s"] > 0 and data["reference_chunks_per_s"] > 0
    assert data["cpu_ratio"] == pytest.approx(
        data["onnx_cpu_chunks_per_s"] / data["reference_chunks_per_s"])
    bad = runner.invoke(cli, ["frontend", "bench", "--chunks", "0"])
    assert bad.exit_code != 0


def test_synth_species_lists_a_dozen(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["synth", "species"])
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) == 1 + 12 + 1


def test_synth_chunks_and_archive(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["synth", "chunks", str(tmp_path / "set"), "--count", "2",
                                 "--codec", "wav"])
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader((tmp_path / "set" / "labels.csv").open()))) == 2
    folder = tmp_path / "marsh-02"
    result = runner.invoke(cli, ["synth", "archive", str(folder), "--start", "2024-05-01T05:30:00Z",
                                 "--minutes", "1", "--file-minutes", "0.5"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "20240501_053000.FLAC", "20240501_053030.FLAC", "labels.csv"]
    again = runner.invoke(cli, ["synth", "archive", str(folder), "--start", "2024-05-01T05:30:00Z",
                                "--minutes", "1", "--file-minutes", "0.5"])
    assert again.exit_code != 0 and "exists" in str(again.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "yesterday"], "cannot read --start"),
        (["--file-minutes", "0.1"], "multiple of 10"),
        (["--minutes", "0"], "must be positive"),
    ],
)
def test_synth_archive_bad_input(runner: CliRunner, tmp_path: Path, args: list[str],
                                 message: str) -> None:
    result = runner.invoke(cli, ["synth", "archive", str(tmp_path / "a"), *args])
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception))


def test_bench_measures_both_front_ends_in_one_run(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["frontend", "bench", "--chunks", "4", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["chunks"], figures["batch"]) == (4, 2)
    for rate in ("onnx_cpu_chunks_per_s", "onnx_cpu_1thread_chunks_per_s",
                 "reference_chunks_per_s"):
        assert figures[rate] > 0, rate
    # The ratio is the two rates measured in this run, not a stored figure.
    assert figures["cpu_ratio"] == pytest.approx(
        figures["onnx_cpu_chunks_per_s"] / figures["reference_chunks_per_s"], rel=1e-6)
    assert figures["onnx_gpu_chunks_per_s"] is None or figures["onnx_gpu_chunks_per_s"] > 0
