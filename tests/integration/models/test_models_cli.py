"""The `soundscape models` commands end to end on small bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from soundscape.app.cli import cli


def test_verify_reports_the_bundle(bundles: dict[str, Path], run_cli) -> None:
    report = json.loads(run_cli("models", "verify", str(bundles["int8"]), "--json"))
    assert report["precision"] == "int8" and report["num_classes"] == 206
    assert report["has_frontend"] is True and report["device"] in ("cpu", "cuda")
    assert set(report["graphs_mb"]) == {"frontend", "embedder", "embed_classifier", "resnet50",
                                        "effnet_b3_lora", "wave_cnn", "meta"}
    assert 0 <= report["agreement_with_fp32"]["top1"] <= 1
    text = run_cli("models", "verify", str(bundles["fp32"]))
    assert ": OK" in text and "fp32" in text


def test_bench_compares_bundles_in_one_run(bundles: dict[str, Path], run_cli) -> None:
    output = run_cli("models", "bench", str(bundles["fp32"]), str(bundles["int8"]),
                     "--batch-sizes", "1,3", "--latency-runs", "3", "--min-seconds", "0",
                     "--min-runs", "2", "--held-out-samples", "8", "--json")
    report = json.loads(output)
    first, second = report["bundles"]
    assert [row["batch"] for row in first["throughput"]] == [1, 3]
    assert all(row["runs"] >= 2 for row in first["throughput"])
    assert all(row["samples_per_s"] > 0 for row in first["throughput"] + second["throughput"])
    assert first["latency_ms"]["p50"] <= first["latency_ms"]["p99"]
    assert first["size_mb"]["five_graphs"] > second["size_mb"]["five_graphs"] > 0
    assert 0 <= second["vs_first"]["top1_agreement"] <= 1
    assert set(second["vs_first"]["speedup_by_batch"]) == {"1", "3"}
    assert "vs_first" not in first and report["machine"]["cores"] >= 1


def test_bench_through_the_front_end(bundles: dict[str, Path], run_cli) -> None:
    text = run_cli("models", "bench", str(bundles["fp32"]), "--audio", "--batch-sizes", "2",
                   "--latency-runs", "2", "--min-seconds", "0", "--min-runs", "1",
                   "--held-out-samples", "4")
    assert "pcm through the front-end" in text and "batch    2:" in text


@pytest.mark.parametrize("args, message", [
    (["export", "OUT", "--profile", "small"], "no checkpoint for ['embedder'"),
    (["export", "OUT", "--checkpoint", "resnet50"], "expected ROLE=FILE.pt"),
    (["export", "OUT", "--checkpoint", "nope=x.pt", "--random"], "unknown roles ['nope']"),
    (["bench", "B", "--batch-sizes", "0,4"], "positive integers"),
    (["export", "OUT", "--fmin", "9000", "--fmax", "100"], "fmin < fmax"),
])
def test_bad_input_is_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a in ("OUT", "B") else a for a in args]
    result = CliRunner().invoke(cli, ["models", *args])
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception or ""))


def test_every_command_has_help(run_cli) -> None:
    for command in ("export", "quantize", "verify", "bench"):
        assert "Usage: " in run_cli("models", command, "--help")
