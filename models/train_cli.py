"""`soundscape models train --manifest`: train a fusion bundle on your own labelled
recordings (registered on the `models` group in models/cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from soundscape.cli_context import need_module

_DIR = click.Path(file_okay=False, path_type=Path)


@click.command("train")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="CSV of labelled spans: path,start,end,labels,group[,split] "
                                  "(see above).")
@click.option("--out", type=_DIR, required=True, help="Folder of the fp32 bundle to write.")
@click.option("--parent", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Bundle whose front-end (and audio embedder, if any) computes "
                                 "the features, and whose labels are the default label set "
                                 "[default: the demo bundle].")
@click.option("--labels", "labels", default=None, metavar="FILE|manifest",
              help="The label set: a file (one label a line), or 'manifest' for the labels the "
                   "manifest uses [default: the parent's labels]. Rows naming other labels are "
                   "refused.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Most passes per branch (ResNet 3x, EfficientNet 1.5x, the waveform CNN "
                   "half); early stopping usually ends sooner.")
@click.option("--patience", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Stop a branch after this many epochs without a gain in validation macro-F1 "
                   "(its best epoch is kept).")
@click.option("--augment", type=click.IntRange(0, 16), default=1, show_default=True,
              help="Augmented copies of every training chunk (background mix, gain, shift).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the split, the augmentations and the weights.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="CPU threads; results repeat for the same seed and thread count.")
@click.option("--version", "version", default=None,
              help="Version string of the bundle [default: derived from its graphs' hashes].")
@click.option("--int8/--no-int8", default=False, show_default=True,
              help="Also make the int8 variant in OUT-int8.")
@click.option("--force", is_flag=True, help="Replace OUT (and OUT-int8) if they exist.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True,
              help="Where PyTorch trains: auto takes a GPU when it sees one (repeat runs then "
                   "differ slightly); cpu repeats exactly for a seed and thread count.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def train_cmd(manifest: Path, out: Path, parent: Path | None, labels: str | None, epochs: int,
              patience: int, augment: int, seed: int, threads: int, version: str | None,
              int8: bool, force: bool, device: str, as_json: bool) -> None:
    """Train a fusion bundle on your own labelled recordings (CPU, or a GPU when present).

    The manifest is a CSV with the header path,start,end,labels,group: one row per
    labelled span; paths relative to the CSV; start and end in seconds (empty: the
    whole file); labels separated by ';' (empty: a checked negative, nothing calls);
    group: the station or recording the row belongs to (default: its file). An
    optional split column (train or validation) forces a group's side. For example:

    \b
    path,start,end,labels,group
    site1/2025-05-01.wav,0,30,warbler;low-hoot,site1
    site1/2025-05-01.wav,30,40,,site1
    site2/dawn.flac,,,cicada,site2

    Every row is checked first (missing files, spans past a file's end or overlapping,
    unknown labels, a group forced into both splits) and all problems are reported at
    once, naming each row's line. About 20% of the groups validate; no group is on both
    sides. Spans are cut into 10 s chunks. The four branches and the meta model are
    trained with early stopping on validation macro-F1, thresholds tuned on validation,
    and the bundle's manifest records the manifest's sha256, counts per label and split,
    the groups, the figures and the parent.
    """
    need_module("torch", "train")
    need_module("onnxruntime", "serve")
    from tqdm import tqdm

    from soundscape.models import DEMO_BUNDLE
    from soundscape.models.manifest_training import TrainOptions, train_manifest

    bar = sys.stdout.isatty() and not as_json
    if as_json:
        def progress(message: str) -> None:
            click.echo(message, err=True)
    else:
        progress = tqdm.write if bar else click.echo
    int8_out = out.with_name(f"{out.name}-int8") if int8 else None
    report = train_manifest(TrainOptions(
        manifest=manifest, out=out, parent=parent or DEMO_BUNDLE, labels=labels, epochs=epochs,
        patience=patience, seed=seed, threads=threads, version=version, int8_out=int8_out,
        force=force, augment=augment, device=device), progress=progress, bar=bar)
    if as_json:
        click.echo(json.dumps({
            "bundle": str(report.fp32), "version": report.version,
            "int8": str(report.int8) if report.int8 else None,
            "int8_top1_agreement": report.int8_top1_agreement,
            "validation_macro_f1": report.validation_macro_f1,
            "per_class_f1": report.per_class_f1, "worst": [k for k, _ in report.worst],
            "thresholds": report.thresholds, "epochs": report.epochs,
            "train_clips": report.train_clips, "validation_clips": report.validation_clips,
            "seconds_per_epoch": report.seconds_per_epoch,
            "seconds_per_1000_clips": report.seconds_per_1000_clips,
            "seconds": report.seconds, "warnings": report.warnings}, indent=2))
        return
    click.echo(f"\nvalidation macro-F1 {report.validation_macro_f1:.3f} "
               f"({report.validation_clips} chunks, tuned thresholds)")
    worst = ", ".join(f"{label} {f1:.3f}" for label, f1 in report.worst if f1 is not None)
    click.echo(f"worst labels: {worst or '-'}")
    click.echo(f"training: {report.seconds_per_epoch:.1f} s per epoch (four branches, "
               f"{report.train_clips} clips), {report.seconds_per_1000_clips:.1f} s per 1,000 "
               f"clips; epochs run {json.dumps(report.epochs)}")
    click.echo(f"bundle {report.fp32}: version {report.version}")
    if report.int8 is not None:
        click.echo(f"int8 bundle {report.int8}: top-1 agreement with fp32 "
                   f"{report.int8_top1_agreement:.2%}")
    click.echo(f"next: soundscape models evaluate {report.fp32} --manifest YOUR_HELD_OUT.csv")


@click.command("train")
@click.option("--chunks", type=click.IntRange(20, 100_000), default=200, show_default=True,
              help="Labelled synthetic 10 s chunks to write as WAV files and train on.")
@click.option("--epochs", type=click.IntRange(1, 100), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_train_cmd(chunks: int, epochs: int, threads: int, as_json: bool) -> None:
    """Training time on this machine, per epoch and per 1,000 clips: `models train` on a
    manifest of synthetic soundscapes written on the spot (8 stations as groups, one
    augmented copy per training chunk), from the demo bundle's front-end."""
    need_module("torch", "train")
    from tqdm import tqdm

    from soundscape.models.train_bench import bench_training

    figures = bench_training(chunks, epochs, threads,
                             progress=(lambda _line: None) if as_json else tqdm.write)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        click.echo(f"{key:>24}: {value}")
