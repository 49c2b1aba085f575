"""`soundscape models train-demo` and `soundscape models evaluate`: the demo bundle and
its quality gates (registered on the `models` group in models/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

from soundscape.cli_context import need_module

_DIR = click.Path(file_okay=False, path_type=Path)


@click.command("train-demo")
@click.option("--out", type=_DIR, default=Path("demo-bundle"), show_default=True,
              help="Folder of the fp32 bundle (the int8 variant goes to OUT-int8).")
@click.option("--chunks", type=click.IntRange(20, 1_000_000), default=1600, show_default=True,
              help="Labelled synthetic 10 s chunks to make (65% train the branches, 20% the "
                   "meta model, 15% tune the thresholds).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Passes over the branches' chunks (ResNet makes 3x as many, EfficientNet "
                   "1.5x, the raw-waveform CNN half).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Names the synthetic data set and seeds every random choice.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also make the int8 variant (static quantization) in OUT-int8.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="CPU threads for PyTorch and onnxruntime. Results are reproducible for the "
                   "same seed and thread count; on a shared machine one thread measured twice "
                   "as fast as two.")
@click.option("--force", is_flag=True, help="Replace OUT (and OUT-int8) if they exist.")
def train_demo_cmd(out: Path, chunks: int, epochs: int, seed: int, int8: bool, threads: int,
                   force: bool) -> None:
    """Train the demo bundle on synthetic soundscapes (12 species), on the CPU.

    Features come from frontend.onnx through onnxruntime, exactly as workers compute
    them; the four branches (small profile) and the meta model are trained, exported
    with parity checks, per-label thresholds tuned on a held-out split, and the int8
    variant made. The shipped bundle (soundscape.models.DEMO_BUNDLE) is:

    \b
    soundscape models train-demo --out models/bundles/demo --force
    """
    need_module("torch", "train")
    need_module("onnxruntime", "serve")
    from soundscape.models.demo import DemoOptions, train_demo

    int8_out = out.with_name(f"{out.name}-int8") if int8 else None
    report = train_demo(DemoOptions(out=out, chunks=chunks, epochs=epochs, seed=seed,
                                    int8_out=int8_out, threads=threads, force=force),
                        progress=tqdm.write, bar=True)
    click.echo(f"\nfp32 bundle {report.fp32}: macro-F1 {report.validation_macro_f1:.3f} on the "
               "threshold-tuning split")
    if report.int8 is not None:
        click.echo(f"int8 bundle {report.int8}: top-1 agreement with fp32 "
                   f"{report.int8_top1_agreement:.2%}")
    click.echo("seconds: " + json.dumps({k: round(v) for k, v in report.seconds.items()}))
    click.echo(f"next: soundscape models evaluate {report.fp32}")


@click.command("evaluate")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--chunks", type=click.IntRange(1, 1_000_000), default=300, show_default=True,
              help="Held-out synthetic chunks to score (ignored with --manifest).")
@click.option("--seed", type=int, default=None,
              help="Synthetic data set to score [default: 20250401, one the demo bundle never "
                   "trained on; the bundle's own training set is refused].")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of real recordings: columns file,label (one row per label, or labels "
                   "separated by ';'); paths relative to the CSV. Every file is cut into 10 s "
                   "windows carrying its labels.")
@click.option("--variant", "variants", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A precision variant to compare with BUNDLE; repeatable [default: "
                   "BUNDLE-int8 and BUNDLE-fp16 where they exist].")
@click.option("--out", type=_DIR,
              help="Folder for report.json, report.html (tables and plots in one file) and "
                   "the plots as PNGs.")
@click.option("--smooth/--no-smooth", default=False, show_default=True,
              help="Also score the --manifest recordings after neighbour-chunk smoothing "
                   "(each window mixed with its file's previous and next windows, weights "
                   "0.25/0.5/0.25) and report macro-F1, macro-AP and ECE with and without it. "
                   "Synthetic chunks have no neighbours, so it is not measured on them.")
@click.option("--threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="onnxruntime CPU threads (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_cmd(bundle: Path, chunks: int, seed: int | None, manifest: Path | None,
                 variants: tuple[Path, ...], out: Path | None, smooth: bool, threads: int,
                 as_json: bool) -> None:
    """Score held-out audio with BUNDLE through the runtime path (score_audio) and report
    macro-F1 and macro-AP, per-label precision/recall/F1/AP, the 20 worst labels,
    confusion pairs, calibration (reliability bins, ECE), the same for each precision
    variant with its agreement with BUNDLE, and with --out an HTML page of it all.

    Decisions use the bundle's per-label thresholds; AP and calibration use the
    probabilities. Exit status 0 whatever the figures: read them, or let tests set the bar.
    """
    need_module("onnxruntime", "serve")
    from soundscape.models.evaluate import EvaluateOptions, evaluate
    from soundscape.models.labelled import EVAL_SEED

    options = EvaluateOptions(chunks=chunks, seed=EVAL_SEED if seed is None else seed,
                              manifest=manifest, out=out, variants=variants or None,
                              threads=threads, smooth=smooth)
    report = evaluate(bundle, options, progress=(lambda _m: None) if as_json else tqdm.write,
                      bar=lambda total: tqdm(total=total, unit="chunk", desc="scoring",
                                             leave=False, disable=as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print_report(report)


def _figure(value: float | None, width: int) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def _print_report(report: dict) -> None:
    fp32 = report["fp32"]
    click.echo(f"\n{fp32['version']} on {report['held_out']}: {fp32['scored']} scored, "
               f"{len(fp32['refused'])} refused")
    for line in report["skipped"]:
        click.echo(f"  skipped {line}")
    click.echo(f"macro-F1 {fp32['macro_f1']:.3f}, macro-AP {_figure(fp32['macro_ap'], 0)}, "
               f"ECE {_figure(fp32['calibration']['ece'], 0)}\n")
    click.echo(f"  {'label':18} {'precision':>9} {'recall':>7} {'F1':>6} {'AP':>6} {'support':>8} "
               f"{'threshold':>9}")
    for row in fp32["per_class"]:
        figures = [_figure(row[key], width) for key, width in
                   (("precision", 9), ("recall", 7), ("f1", 6), ("ap", 6))]
        click.echo(f"  {row['label']:18} {' '.join(figures)} {row['support']:8d} "
                   f"{fp32['thresholds'][row['label']]:9.2f}")
    click.echo(f"\nworst: {', '.join(fp32['worst'])}")
    pairs = [f"{p['true']} -> {p['predicted']} ({p['count']})" for p in fp32["confusion_pairs"][:5]]
    click.echo(f"confused most: {', '.join(pairs) or 'nothing'}")
    for variant in report["variants"]:
        agree = variant["agreement_with_fp32"]
        click.echo(f"{variant['version']} ({variant['precision']}): macro-F1 "
                   f"{variant['macro_f1']:.3f} ({variant['macro_f1_minus_fp32']:+.3f} vs fp32), "
                   f"top-1 agreement {agree['top1']:.2%}, same decisions {agree['decisions']:.2%}")
    smoothing = report["smoothing"]
    if smoothing["measured"]:
        for row in smoothing["bundles"]:
            click.echo(f"smoothing, {row['version']} ({row['precision']}): macro-F1 "
                       f"{_figure(row['macro_f1']['without'], 0)} -> "
                       f"{_figure(row['macro_f1']['with'], 0)}, macro-AP "
                       f"{_figure(row['macro_ap']['without'], 0)} -> "
                       f"{_figure(row['macro_ap']['with'], 0)}")
    elif smoothing["why"] != "not asked for (--smooth)":
        click.echo(f"smoothing not measured: {smoothing['why']}")
    if "confusion_png" in report:
        click.echo(f"confusion matrix: {report['confusion_png']}")
    if "report_html" in report:
        click.echo(f"report: {report['report_html']} (and {report['report_json']})")
