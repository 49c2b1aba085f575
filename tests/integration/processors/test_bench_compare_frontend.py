"""`soundscape bench pipeline --compare-frontend`: the same chunks through the broker with
the front-end as the graph, then on the FFT, both fully scored and reported."""

from __future__ import annotations

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
