"""bench/gpu.sh end to end on the CPU provider at small sizes, so the GPU benchmark cannot
rot between the sessions that have a GPU: every figure the report promises is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from soundscape.models.device_bench import summary_lines

ROOT = Path(__file__).resolve().parents[3]


def test_the_device_benchmark_runs_on_the_cpu_and_reports_every_figure(tmp_path: Path) -> None:
    env = dict(os.environ) | {
        "PYTHON": sys.executable, "DEVICE": "cpu", "BATCHES": "1,4", "BASELINE_CHUNKS": "3",
        "LATENCY_RUNS": "3", "MIN_SECONDS": "0.05", "OUT_DIR": str(tmp_path),
        "BUNDLES": f"{ROOT}/models/bundles/demo {ROOT}/models/bundles/demo-int8"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (report_file,) = tmp_path.glob("device-*.json")
    report = json.loads(report_file.read_text())
    assert report["device"]["used"] == "cpu" and report["device"]["gpu_memory_used_mb"] is None
    assert [b["precision"] for b in report["bundles"]] == ["fp32", "int8"]
    for bundle in report["bundles"]:
        assert [t["batch"] for t in bundle["throughput"]] == [1, 4]
        assert all(t["samples_per_s"] > 0 for t in bundle["throughput"])
        assert 0 < bundle["latency_ms"]["p50"] <= bundle["latency_ms"]["p99"]
    assert [t["batch"] for t in report["seed_setup_no_embedder"]["throughput"]] == [1, 4]
    baseline = report["seed_style_baseline"]
    assert baseline["chunks"] == 3 and baseline["chunks_per_s"] > 0
    assert report["ratio_to_seed_style_baseline"] == \
        report["best_pcm_to_probabilities_per_s"] / baseline["chunks_per_s"]
    assert "\n".join(summary_lines(report)) in done.stdout  # what the script prints
