"""`soundscape bench device`: registered on the `bench` group in app/cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import click

from soundscape.cli_context import need_module
from soundscape.models.cli import _batch_sizes


@click.command("device")
@click.argument("bundles", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch-sizes", default="1,32,256,1024", show_default=True, callback=_batch_sizes,
              help="Comma-separated batch sizes for chunks/s.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="auto: CUDA when onnxruntime-gpu sees a GPU.")
@click.option("--baseline-chunks", type=click.IntRange(2, 10_000), default=16, show_default=True,
              help="Chunks the seed-style baseline scores one by one.")
@click.option("--latency-runs", type=click.IntRange(3, 100_000), default=30, show_default=True)
@click.option("--min-seconds", type=click.FloatRange(0.01), default=1.0, show_default=True,
              help="Least time measured per bundle and batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def bench_device_cmd(bundles: tuple[Path, ...], batch_sizes: list[int], device: str,
                     baseline_chunks: int, latency_runs: int, min_seconds: float,
                     as_json: bool) -> None:
    """What a device does with BUNDLES (e.g. the full-size fp32 bundle, then its fp16 and
    int8 variants), in one run: PCM-to-probabilities chunks/s per batch size and the
    single-chunk p50/p99; the seed's setup (features precomputed, no embedder); the
    seed-style baseline (each chunk alone, librosa features on the CPU, the graphs one
    after another) and the ratio to it; GPU memory used. bench/gpu.sh runs it on a GPU
    host."""
    need_module("onnxruntime", "serve")
    need_module("librosa", "serve")
    from soundscape.models.device_bench import bench_device, summary_lines

    report = bench_device(list(bundles), batch_sizes, device=device,
                          baseline_chunks=baseline_chunks, latency_runs=latency_runs,
                          min_seconds=min_seconds,
                          progress=(lambda _m: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    for line in summary_lines(report):
        click.echo(line)
