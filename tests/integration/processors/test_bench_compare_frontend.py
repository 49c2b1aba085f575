"""`soundscape bench pipeline --compare-frontend` and `--compare-lanes`: the same chunks
through the broker with the front-end as the graph, then on the FFT (or one lane, then
two), both fully scored and reported."""

from __future__ import annotations

import pytest

from soundscape.models import DEMO_BUNDLE
from soundscape.settings import Settings


def test_compare_frontend_runs_both_paths(services: Settings) -> None:
    from soundscape.processors.bench import compare_frontend

    cpu = services.model_copy(update={"models": services.models.model_copy(
        update={"device": "cpu"})})
    both = compare_frontend(cpu, DEMO_BUNDLE, chunks=8, progress=False)
    assert both["graph"]["frontend_path"] == "graph"
    assert both["fft"]["frontend_path"] == both["fft_path_ran"] == "fft"
    assert both["graph"]["chunks"] == both["fft"]["chunks"] == 8
    assert both["graph_chunks_per_s"] > 0 and both["fft_chunks_per_s"] > 0
    assert both["ratio"] == round(both["fft_chunks_per_s"] / both["graph_chunks_per_s"], 2)


def test_compare_lanes_from_the_cli(services: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from soundscape.app.cli import cli
    from soundscape.settings import settings_env

    for name, value in settings_env(services).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOUNDSCAPE_MODELS__DEVICE", "cpu")
    runner = CliRunner()
    bad = runner.invoke(cli, ["bench", "pipeline", "--compare-lanes", "2,2"])
    assert bad.exit_code == 2 and "two different lane counts" in bad.output
    result = runner.invoke(cli, ["bench", "pipeline", "--bundle", str(DEMO_BUNDLE), "--chunks",
                                  "8", "--compare-lanes", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    both = json.loads(result.stdout)
    assert (both["lanes_1"]["lanes"], both["lanes_2"]["lanes"]) == (1, 2)
    assert both["lanes_1"]["chunks"] == both["lanes_2"]["chunks"] == 8
    assert both["ratio"] == round(both["lanes_2_chunks_per_s"] / both["lanes_1_chunks_per_s"], 2)
