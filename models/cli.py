"""`soundscape models`: export, quantize, verify and benchmark model bundles.

Export and quantize need the `train` extra (PyTorch, onnx) besides `serve`; verify and
bench need only onnxruntime and numpy, like the workers that run the bundles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from soundscape.cli_context import current_settings, need_module
from soundscape.errors import UserError
from soundscape.models.profiles import DEFAULT_NUM_CLASSES, PROFILES

_BUNDLE = click.Path(exists=False, file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)



def _batch_sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated integers, e.g. 1,8,64") from None
    if not sizes or sizes[0] < 1:
        raise click.BadParameter("batch sizes must be positive integers")
    return sizes


def _read_labels(path: Path | None, classes: int | None) -> list[str]:
    if path is None:
        count = classes or DEFAULT_NUM_CLASSES
        return [f"class_{i:03d}" for i in range(count)]
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if classes is not None and classes != len(labels):
        raise UserError(f"{path}: {len(labels)} labels, but --classes {classes}",
                        hint="leave out --classes: the labels file sets the class count")
    if len(set(labels)) != len(labels):
        raise UserError(f"{path}: labels repeat")
    if not labels:
        raise UserError(f"{path}: no labels (one per line)")
    return labels


def _checkpoints(values: tuple[str, ...]) -> dict[str, Path]:
    result = {}
    for value in values:
        role, sep, file = value.partition("=")
        if not sep or not role or not file:
            raise click.BadParameter(f"{value!r}: expected ROLE=FILE.pt", param_hint="--checkpoint")
        result[role.strip()] = Path(file).expanduser()
    return result


@click.group()
def models() -> None:
    """Model bundles: export checkpoints to ONNX, make int8/fp16 variants, verify, benchmark.

    A bundle is a folder of ONNX graphs, labels.txt and bundle.json (hashes, shapes,
    features, precision, version); workers refuse one that does not match its manifest.
    """


@models.command("export")
@click.argument("out", type=_BUNDLE)
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="full", show_default=True,
              help="full: the seed's sizes (ResNet50, EfficientNet-B3, CNN14); small: the same "
                   "shapes with far fewer parameters, for tests.")
@click.option("--labels", "labels_file", type=_FILE, help="Labels, one per line (sets the class count).")
@click.option("--classes", type=click.IntRange(1, 100_000),
              help=f"Class count without a labels file [default: {DEFAULT_NUM_CLASSES}]; "
                   "labels become class_000, class_001, ...")
@click.option("--checkpoint", "checkpoint", multiple=True, metavar="ROLE=FILE.pt",
              help="A state_dict for one role (embedder, embed_classifier, resnet50, "
                   "effnet_b3_lora, wave_cnn, meta); repeat per role.")
@click.option("--random", "random_weights", is_flag=True,
              help="Fresh random weights for roles without a checkpoint (benchmarks only).")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights.")
@click.option("--frontend", type=_FILE, help="A front-end graph (frontend.onnx) to include.")
@click.option("--fmin", type=float, default=50.0, show_default=True, help="Mel band floor, Hz (manifest).")
@click.option("--fmax", type=float, default=14_000.0, show_default=True, help="Mel band ceiling, Hz (manifest).")
@click.option("--thresholds", "thresholds_file", type=_FILE,
              help="JSON {label: threshold}; labels not named get 0.5.")
@click.option("--version", "version", help="Bundle version [default: fusion-PROFILE-cC-<hash>].")
@click.option("--calibration", type=_FILE,
              help=".npz of branch inputs (waveform, mel, mel_aug) for the data-dependent "
                   "initialisation of random weights [default: synthetic clips].")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_cmd(out: Path, profile: str, labels_file: Path | None, classes: int | None,
               checkpoint: tuple[str, ...], random_weights: bool, seed: int,
               frontend: Path | None, fmin: float, fmax: float, thresholds_file: Path | None,
               version: str | None, calibration: Path | None, force: bool) -> None:
    """Export checkpoints (or random weights) to an fp32 bundle in OUT.

    Every graph gets a dynamic batch axis and is checked against PyTorch (the largest
    absolute difference is printed and bounded); LoRA adapters are merged first. The
    bundle appears in OUT only once complete and verified.

    \b
    soundscape models export bundles/full --random
    soundscape models export bundles/mine --labels labels.txt \\
        --checkpoint embedder=cnn14.pt --checkpoint resnet50=resnet.pt ...
    """
    need_module("torch", "train")
    need_module("onnxruntime", "serve")
    from pydantic import ValidationError

    from soundscape.bundle import BundleFeatures
    from soundscape.models.export import ExportRequest, export_bundle

    try:
        features = BundleFeatures(fmin=fmin, fmax=fmax)
    except ValidationError as exc:
        raise click.BadParameter(exc.errors()[0]["msg"], param_hint="--fmin/--fmax") from None
    thresholds = None
    if thresholds_file is not None:
        try:
            thresholds = {str(k): float(v) for k, v in json.loads(thresholds_file.read_text()).items()}
        except (ValueError, AttributeError) as exc:
            raise UserError(f"{thresholds_file}: not a JSON object of label: number ({exc})") from None
    if version is not None and not re.fullmatch(r"[A-Za-z0-9._+-]{1,128}", version):
        raise click.BadParameter("letters, digits and . _ + - only, at most 128", param_hint="--version")
    request = ExportRequest(
        out=out, profile=PROFILES[profile], labels=_read_labels(labels_file, classes),
        features=features, checkpoints=_checkpoints(checkpoint),
        random_seed=seed if random_weights else None, frontend=frontend, version=version,
        calibration=calibration, thresholds=thresholds, force=force,
    )
    reports = export_bundle(request, progress=tqdm.write, bar=True)
    five = sum(r.bytes for r in reports if r.role not in ("frontend", "embedder"))
    click.echo(f"\nbundle {out}: {len(reports)} graphs; the four branches and the meta model "
               f"take {five / 1e6:.1f} MB")


@models.command("quantize")
@click.argument("source", type=_BUNDLE)
@click.argument("out", type=_BUNDLE)
@click.option("--precision", type=click.Choice(["int8", "fp16"]), default="int8", show_default=True,
              help="int8: static QDQ quantization for CPUs and the Pi; fp16: for GPUs.")
@click.option("--calibration", type=_FILE,
              help=".npz of branch inputs (waveform, mel, mel_aug) from your own recordings "
                   "[default: synthetic clips].")
@click.option("--held-out", type=_FILE, help=".npz like --calibration, for the agreement check.")
@click.option("--calibration-samples", default=64, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--held-out-samples", default=256, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="percentile",
              show_default=True, help="How int8 activation ranges are chosen from the calibration set.")
@click.option("--float-roles", default="effnet_b3_lora", show_default=True,
              help="int8: comma-separated graphs to leave float ('' quantizes all). "
                   "EfficientNet's int8 graph is slower than float on x86.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def quantize_cmd(source: Path, out: Path, precision: str, calibration: Path | None,
                 held_out: Path | None, calibration_samples: int, held_out_samples: int,
                 method: str, float_roles: str, force: bool) -> None:
    """Make the int8 or fp16 variant of the fp32 bundle SOURCE in OUT.

    The variant is scored next to SOURCE on a held-out set and its top-1 agreement is
    written to its manifest (agreement_with_fp32).
    """
    need_module("onnx", "train")
    need_module("onnxruntime", "serve")
    from soundscape.models.quantize import VariantOptions, make_variant

    options = VariantOptions(
        calibration=calibration, held_out=held_out, calibration_samples=calibration_samples,
        held_out_samples=held_out_samples, method=method,
        float_roles=tuple(r.strip() for r in float_roles.split(",") if r.strip()),
    )
    report = make_variant(source, out, precision, options, force=force, progress=tqdm.write)
    click.echo(f"\n{report.version}: {sum(report.sizes.values()) / 1e6:.1f} MB, top-1 agreement "
               f"with fp32 {report.agreement.top1:.2%} on {report.agreement.samples} held-out "
               f"items, made in {report.seconds:.0f} s")


@models.command("verify")
@click.argument("bundle", type=_BUNDLE)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify_cmd(bundle: Path, as_json: bool) -> None:
    """Check BUNDLE: manifest, files and hashes, labels, every graph's inputs and outputs,
    then score two random items through it. Exit status 2 with the reason when it fails."""
    need_module("onnxruntime", "serve")
    from soundscape.models.verify import verify_bundle

    report = verify_bundle(bundle, current_settings())
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(f"{report['path']}: OK")
    for key in ("version", "precision", "num_classes", "device", "has_frontend"):
        click.echo(f"  {key + ':':14} {report[key]}")
    if report.get("agreement_with_fp32"):
        agreement = report["agreement_with_fp32"]
        click.echo(f"  {'agreement:':14} top-1 {agreement['top1']:.2%} with "
                   f"{agreement['fp32_version']} on {agreement['samples']} items")
    for role, mb in report["graphs_mb"].items():
        click.echo(f"  {role:17} {mb:8.1f} MB")


@models.command("bench")
@click.argument("bundles", nargs=-1, required=True, type=_BUNDLE)
@click.option("--batch-sizes", default="1,2,4,8,16,32,64,128,256", show_default=True,
              callback=_batch_sizes, help="Comma-separated batch sizes for throughput.")
@click.option("--latency-runs", default=30, show_default=True, type=click.IntRange(1, 100_000),
              help="Single-sample runs for the latency percentiles.")
@click.option("--min-seconds", default=1.0, show_default=True, type=click.FloatRange(0),
              help="Least time spent per bundle and batch size.")
@click.option("--min-runs", default=3, show_default=True, type=click.IntRange(1, 100_000),
              help="Least timed runs per bundle and batch size (the median counts).")
@click.option("--audio", is_flag=True, help="Feed PCM through the bundle's front-end.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]),
              help="[default: SOUNDSCAPE_MODELS__DEVICE]")
@click.option("--threads", type=click.IntRange(0, 256),
              help="onnxruntime intra-op threads [default: SOUNDSCAPE_MODELS__INTRA_OP_THREADS].")
@click.option("--held-out", type=_FILE, help=".npz of branch inputs to score [default: synthetic].")
@click.option("--held-out-samples", default=128, show_default=True, type=click.IntRange(1, 100_000),
              help="Items scored by every bundle for the top-1 agreement with the first.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_cmd(bundles: tuple[Path, ...], batch_sizes: list[int], latency_runs: int,
              min_seconds: float, min_runs: int, audio: bool, device: str | None, threads: int | None,
              held_out: Path | None, held_out_samples: int, as_json: bool) -> None:
    """Single-sample latency (p50/p95/p99), throughput per batch size and size on disk.

    Give several bundles (say fp32 and its int8 variant) to measure them in one run,
    interleaved on the same inputs: later ones are compared with the first (speed ratio,
    top-1 agreement on the held-out items).
    """
    need_module("onnxruntime", "serve")
    from soundscape.models.bench import BenchOptions, bench

    settings = current_settings().models
    options = BenchOptions(
        batch_sizes=batch_sizes, latency_runs=latency_runs, min_seconds=min_seconds,
        min_runs=min_runs, audio=audio,
        device=device or settings.device, threads=settings.intra_op_threads if threads is None else threads,
        held_out=held_out, held_out_samples=held_out_samples,
    )
    report = bench(list(bundles), options, progress=None if as_json else tqdm.write,
                   bar=lambda items: tqdm(items, desc="batch sizes", leave=False, disable=as_json))
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    _print_bench(report)


def _print_bench(report: dict[str, Any]) -> None:
    machine = report["machine"]
    click.echo(f"\n{machine['cpu']}, {machine['cores']} cores, onnxruntime {machine['onnxruntime']}, "
               f"load average {machine['load_average_at_start']}; inputs: {report['inputs']}")
    for entry in report["bundles"]:
        size = entry["size_mb"]
        latency = entry["latency_ms"]
        click.echo(f"\n{entry['version']} ({entry['precision']}, {entry['device']})")
        click.echo(f"  size: branches + meta {size['five_graphs']:.1f} MB, embedder "
                   f"{size['embedder']:.1f} MB, front-end {size['frontend']:.1f} MB, "
                   f"total {size['total']:.1f} MB")
        click.echo(f"  single-sample latency: p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
                   f"p99 {latency['p99']:.1f} ms ({latency['runs']} runs)")
        vs = entry.get("vs_first")
        for row in entry["throughput"]:
            ratio = f"  x{vs['speedup_by_batch'][str(row['batch'])]:.2f} vs first" if vs else ""
            click.echo(f"  batch {row['batch']:4d}: {row['samples_per_s']:9.1f} samples/s{ratio}")
        if vs:
            click.echo(f"  vs the first on {vs['samples']} held-out items: top-1 agreement "
                       f"{vs['top1_agreement']:.2%}, its top-1 in our top 5 {vs['top1_in_top5']:.2%}, "
                       f"mean |dp| {vs['mean_abs_diff']:.4f}")


from soundscape.models.demo_cli import evaluate_cmd, train_demo_cmd  # noqa: E402  (needs the helpers above)

models.add_command(train_demo_cmd)
models.add_command(evaluate_cmd)

from soundscape.models.train_cli import train_cmd  # noqa: E402

models.add_command(train_cmd)


from soundscape.models.birdnet.cli import import_cmd  # noqa: E402

models.add_command(import_cmd)
