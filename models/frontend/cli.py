"""`soundscape frontend ...`: build, check, compare and time the audio front-end."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from soundscape.errors import UserError
from soundscape.cli_context import current_settings, echo_json


def _load_model(path: Path | None) -> Any:
    """The graph from a file (a bundle's frontend.onnx), or freshly built."""
    import onnx

    from soundscape.models.frontend.graph import build_frontend

    if path is None:
        return build_frontend()
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError ...
        raise UserError(
            f"cannot read {path} as an ONNX model: {exc}",
            hint="give a frontend.onnx written by `soundscape frontend build`",
        ) from None


model_option = click.option(
    "--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A frontend.onnx to use (e.g. a bundle's); default: build the current graph in memory.",
)


@click.group("frontend")
def frontend() -> None:
    """The audio front-end: PCM -> denoised waveform, mel and augmented mel.

    The runtime form is one ONNX graph (frontend.onnx in every bundle) that runs on the
    GPU or the CPU with the branches; the reference form is the seed's noisereduce +
    librosa recipe. docs/frontend.md describes both and where they depart from the seed.
    """


@frontend.command("build")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("frontend.onnx"), show_default=True, help="File to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def build(out: Path, force: bool) -> None:
    """Write frontend.onnx and check that every op has a CUDA kernel."""
    from soundscape.models.frontend.graph import build_frontend
    from soundscape.models.frontend.ops_check import check_ops

    if out.exists() and not force:
        raise UserError(f"{out} exists", hint="pass --force to overwrite it, or choose --out")
    model = build_frontend()
    report = check_ops(model)
    if not report.ok:
        raise UserError("the front-end graph uses ops without CUDA kernels:\n  "
                        + "\n  ".join(report.problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = model.SerializeToString()
    out.write_bytes(payload)
    click.echo(f"wrote {out} ({len(payload) / 1e6:.2f} MB, sha256 "
               f"{hashlib.sha256(payload).hexdigest()})")
    click.echo(f"ops: {', '.join(report.graph_ops)} (all have CUDA kernels)")


@frontend.command("check")
@model_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(model: Path | None, as_json: bool) -> None:
    """List the graph's op types and prove none needs a CPU fallback on the GPU.

    Checks the ops as written and as ONNX Runtime leaves them after loading the graph on
    the CPU provider; exit status 1 if any op lacks a CUDA kernel (STFT, DFT,
    MelWeightMatrix ...).
    """
    from soundscape.models.frontend.ops_check import check_ops

    report = check_ops(_load_model(model))
    if as_json:
        echo_json({"ok": report.ok, "graph_ops": report.graph_ops,
                    "loaded_ops": report.loaded_ops, "problems": list(report.problems)})
    else:
        click.echo("graph ops:  " + ", ".join(f"{k} x{v}" for k, v in report.graph_ops.items()))
        click.echo("after load: " + ", ".join(f"{k} x{v}" for k, v in report.loaded_ops.items()))
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        click.echo("ok: every op has a CUDA kernel" if report.ok else "FAILED")
    if not report.ok:
        raise SystemExit(1)


@frontend.command("parity")
@model_option
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic cases.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def parity(model: Path | None, seed: int, as_json: bool) -> None:
    """Compare the ONNX front-end with noisereduce + librosa; print the largest differences.

    Cases: calls over wind, rain, hum and a silent floor, noise, silence, tones,
    clipping, DC offset, int16, repaired NaNs, a short chunk; and chunks both forms must
    refuse (all NaN, too short, too long, mostly NaN, stereo). Exit status 1 if any
    difference exceeds its tolerance or the forms disagree on a refusal.
    """
    from soundscape.models.frontend.parity import TOLERANCES, parity_cases, run_parity
    from soundscape.models.frontend.runtime import FrontEnd

    settings = current_settings()
    frontend_ = FrontEnd(
        _load_model(model), threads=settings.frontend.threads,
        length_tolerance_ms=settings.frontend.length_tolerance_ms,
        max_nonfinite_fraction=settings.frontend.max_nonfinite_fraction,
    )
    results = run_parity(parity_cases(seed), frontend_)
    failures = {r.name: r.problems() for r in results if r.problems()}
    if as_json:
        echo_json({
            "tolerances": TOLERANCES,
            "providers": frontend_.providers,
            "cases": [{"name": r.name, "description": r.description, "error": r.error,
                       "max_abs_diff": r.max_diff, "worst_at": r.worst_at,
                       "problems": r.problems()} for r in results],
            "ok": not failures,
        })
    else:
        click.echo(f"tolerances (max |runtime - reference|): waveform {TOLERANCES['waveform']:g}"
                   f" full scale, mel {TOLERANCES['mel']:g} dB, mel_aug {TOLERANCES['mel_aug']:g}"
                   f" dB; runtime on {', '.join(frontend_.providers)}")
        click.echo(f"{'case':<12} {'waveform':>10} {'mel dB':>10} {'mel_aug dB':>10}  note")
        for r in results:
            if r.error or r.reference_error:
                note = f"refused by both: {r.error}" if r.error == r.reference_error else ""
                click.echo(f"{r.name:<12} {'-':>10} {'-':>10} {'-':>10}  {note}")
            else:
                d = r.max_diff
                click.echo(f"{r.name:<12} {d['waveform']:>10.2e} {d['mel']:>10.2e} "
                           f"{d['mel_aug']:>10.2e}  {r.description}")
        for name in TOLERANCES:
            worst = max((r for r in results if name in r.max_diff),
                        key=lambda r: r.max_diff[name], default=None)
            if worst is not None:
                click.echo(f"largest {name} difference: {worst.max_diff[name]:.3g} in "
                           f"{worst.name} at index {worst.worst_at[name]}")
        for name, problems in failures.items():
            click.echo(f"FAILED {name}: {'; '.join(problems)}")
        click.echo("ok: all within tolerance" if not failures else "parity FAILED")
    if failures:
        raise SystemExit(1)


@frontend.command("bench")
@model_option
@click.option("--chunks", default=32, show_default=True, help="Synthetic chunks per form.")
@click.option("--batch", default=16, show_default=True, help="ONNX batch size.")
@click.option("--threads", default=None, type=int,
              help="ONNX Runtime CPU threads (default: settings.frontend.threads, 0 = all cores).")
@click.option("--repeats", default=1, show_default=True, help="Passes over the chunks.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(model: Path | None, chunks: int, batch: int, threads: int | None, repeats: int,
          as_json: bool) -> None:
    """Chunks/s of the ONNX front-end (CPU, and GPU where there is one) against the
    noisereduce + librosa reference on this machine, measured in one run, and the ratio."""
    from soundscape.models.frontend.bench import run_bench

    if chunks < 1 or batch < 1 or repeats < 1:
        raise click.BadParameter("--chunks, --batch and --repeats must be at least 1")
    if threads is None:
        threads = current_settings().frontend.threads
    if model is not None:
        _load_model(model)  # a clear error for an unreadable file
    results = run_bench(chunks, batch, threads, repeats, str(model) if model else None)
    if as_json:
        echo_json(results)
        return
    click.echo(f"cpu: {results['cpu']} ({results['cpu_cores']} cores), "
               f"onnxruntime {results['onnxruntime']}, {chunks} chunks x {repeats}, batch {batch}")
    click.echo(f"onnx (cpu, {results['onnx_cpu_threads']} threads): "
               f"{results['onnx_cpu_chunks_per_s']:8.2f} chunks/s")
    click.echo(f"onnx (cpu, 1 thread):  {results['onnx_cpu_1thread_chunks_per_s']:8.2f} chunks/s")
    click.echo(f"reference (noisereduce + librosa, 1 thread): "
               f"{results['reference_chunks_per_s']:8.2f} chunks/s")
    click.echo(f"ratio onnx cpu / reference: {results['cpu_ratio']:.2f}x "
               f"(1 thread each: {results['cpu_1thread_ratio']:.2f}x); "
               f"load average {results['load_average_1min']:.1f}")
    if results["onnx_gpu_chunks_per_s"] is None:
        click.echo(f"gpu: {results['gpu_note']}")
    else:
        click.echo(f"onnx (gpu): {results['onnx_gpu_chunks_per_s']:8.2f} chunks/s "
                   f"({results['gpu_ratio']:.1f}x the reference)")
