"""`soundscape models evaluate`: how well a bundle detects species, through the runtime path.

Audio goes in as workers feed it (`FusionModel.score_audio`: per-chunk checks, the
bundle's front-end, embedder, branches, meta model), decisions use the bundle's own
per-label thresholds, and the figures are per-label precision, recall and F1, their
macro mean, the worst labels, and a confusion matrix drawn to a PNG. Precision variants
(int8, fp16) are scored on the same audio and compared with the fp32 bundle.

The audio is either held-out synthetic chunks (a data set seed the demo bundle never
trained on) or real recordings listed in a CSV of (file, label): each file is cut into
10 s windows that all carry the file's labels.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import Bundle, load_bundle
from soundscape.errors import UserError
from soundscape.fusion import FusionModel
from soundscape.models.labelled import EVAL_SEED, synthetic_pcm_labelled
from soundscape.models.metrics import (
    NONE,
    class_scores,
    confusion_matrix,
    decision_agreement,
    decisions,
    macro_f1,
)
from soundscape.synthetic import SPECIES_NAMES

Progress = Callable[[str], None]
#: A recording's last partial window is scored (zero-padded) when it is at least this long.
MIN_TAIL_S = 5.0
#: Chunks scored per FusionModel call.
BATCH = 16
#: Labels listed as the worst.
WORST = 3


@dataclass
class Clips:
    """Audio windows to score with their multi-hot truth, made batch by batch on demand."""

    source: str
    count: int
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]  # batch -> (pcm, targets)
    skipped: list[str] = field(default_factory=list)  # why some files or windows were left out


def synthetic_clips(count: int, seed: int = EVAL_SEED) -> Clips:
    """`count` labelled synthetic chunks of data set `seed`."""

    def batches(size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, count, size):
            pcm, targets, _ = synthetic_pcm_labelled(min(size, count - start), seed, start)
            yield pcm, targets

    return Clips(f"{count} synthetic chunks of data set {seed}", count, batches)


def read_manifest_csv(path: Path, labels: tuple[str, ...]) -> dict[Path, set[str]]:
    """{audio file: its labels} from a CSV with a `file` column and a `label` (or `labels`,
    `;`-separated) column; a file may take several rows. Paths are relative to the CSV."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read it as CSV ({exc})") from None
    column = next((c for c in ("label", "labels") if rows and c in rows[0]), None)
    if not rows or "file" not in rows[0] or column is None:
        raise UserError(f"{path}: needs a header with the columns file and label",
                        hint="file,label\\nrecordings/site1.wav,warbler")
    files: dict[Path, set[str]] = {}
    unknown: set[str] = set()
    for row in rows:
        names = {n.strip() for n in (row[column] or "").split(";") if n.strip()}
        unknown |= names - set(labels)
        file = Path(row["file"] or "")
        files.setdefault(file if file.is_absolute() else path.parent / file, set()).update(names)
    if unknown:
        raise UserError(f"{path}: labels the bundle does not know: {', '.join(sorted(unknown))}",
                        hint=f"the bundle's labels: {', '.join(labels)}")
    return files


def _windows(path: Path, sample_rate: int, samples: int) -> list[np.ndarray]:
    """The file as mono windows of `samples` at `sample_rate` (see MIN_TAIL_S)."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate).astype(np.float32)
    windows = [mono[i:i + samples] for i in range(0, len(mono), samples)]
    if windows and len(windows[-1]) < samples:
        tail = windows.pop()
        if len(tail) >= MIN_TAIL_S * sample_rate or not windows:
            windows.append(np.pad(tail, (0, samples - len(tail))))
    return windows


def recording_clips(path: Path, bundle: Bundle) -> Clips:
    """10 s windows of every file the CSV lists, each with its file's labels."""
    labels = bundle.labels
    features = bundle.manifest.features
    files = read_manifest_csv(path, labels)
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    skipped = []
    for file, names in files.items():
        target = np.array([label in names for label in labels], dtype=np.float32)
        try:
            parts = _windows(file, features.sample_rate, features.samples)
        except Exception as exc:  # soundfile raises LibsndfileError, OSError, RuntimeError
            skipped.append(f"{file}: cannot read it ({exc})")
            continue
        windows += [(w, target) for w in parts]
    if not windows:
        raise UserError(f"{path}: no audio could be read", hint="; ".join(skipped[:3]))

    def batches(size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(windows), size):
            part = windows[start:start + size]
            yield np.stack([w for w, _ in part]), np.stack([t for _, t in part])

    return Clips(f"{len(windows)} windows of {len(files) - len(skipped)} recordings from "
                 f"{path.name}", len(windows), batches, skipped)


@dataclass
class Scored:
    bundle: Bundle
    probabilities: np.ndarray  # [n, C], NaN rows for refused windows
    errors: dict[int, str]


def score_all(models: list[FusionModel], clips: Clips, bar: Any = None) -> tuple[list[Scored], np.ndarray]:
    """Every model's probabilities for every clip (the same audio for all), and the truth."""
    probs: list[list[np.ndarray]] = [[] for _ in models]
    errors: list[dict[int, str]] = [{} for _ in models]
    targets = []
    offset = 0
    for pcm, truth in clips.batches(BATCH):
        for index, model in enumerate(models):
            result = model.score_audio(pcm)
            probs[index].append(result.probabilities)
            errors[index].update({offset + i: why for i, why in result.errors.items()})
        targets.append(truth)
        offset += len(pcm)
        if bar is not None:
            bar.update(len(pcm))
    scored = [Scored(m.bundle, np.concatenate(p), e) for m, p, e in zip(models, probs, errors, strict=True)]
    return scored, np.concatenate(targets)


def summary(scored: Scored, targets: np.ndarray) -> dict[str, Any]:
    """Figures of one bundle over the windows it scored."""
    ok = np.isfinite(scored.probabilities).all(axis=1)
    probs, truth = scored.probabilities[ok], targets[ok]
    thresholds = scored.bundle.thresholds()
    classes = class_scores(probs, truth, thresholds, scored.bundle.labels)
    worst = sorted((c for c in classes if c.f1 is not None), key=lambda c: (c.f1, c.label))[:WORST]
    return {
        "version": scored.bundle.version,
        "precision": scored.bundle.manifest.precision,
        "path": str(scored.bundle.root),
        "scored": int(ok.sum()),
        "refused": {str(i): why for i, why in sorted(scored.errors.items())},
        "macro_f1": macro_f1(probs, truth, thresholds),
        "per_class": [vars(c) for c in classes],
        "worst": [c.label for c in worst],
        "thresholds": dict(zip(scored.bundle.labels, map(float, thresholds), strict=True)),
    }


def agreement(fp32: Scored, other: Scored) -> dict[str, float]:
    """How closely a variant follows the fp32 bundle on the windows both scored."""
    ok = np.isfinite(fp32.probabilities).all(axis=1) & np.isfinite(other.probabilities).all(axis=1)
    a, b = fp32.probabilities[ok], other.probabilities[ok]
    return {
        "top1": float(np.mean(a.argmax(1) == b.argmax(1))),
        "decisions": decision_agreement(a, b, fp32.bundle.thresholds()),
        "mean_abs_diff": float(np.abs(a - b).mean()),
        "items": int(ok.sum()),
    }


def plot_confusion(matrix: np.ndarray, labels: tuple[str, ...], title: str, path: Path) -> Path:
    """A heat map of the multi-label confusion matrix, rows normalised, counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*labels, NONE]
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = 0.55 * len(names) + 2.5
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            axes.text(col, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if shares[row, col] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the row")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


@dataclass
class EvaluateOptions:
    chunks: int = 300
    seed: int = EVAL_SEED
    manifest: Path | None = None
    out: Path | None = None  # where the PNG and report.json go; None: nowhere
    variants: tuple[Path, ...] | None = None  # None: BUNDLE-int8 and BUNDLE-fp16 beside it
    device: str = "cpu"
    threads: int = 0


def trained_seed(bundle: Bundle) -> int | None:
    """The synthetic data set a bundle was trained on (train-demo records it), if known."""
    origin = (bundle.manifest.model_extra or {}).get("origin") or {}
    return (origin.get("training") or {}).get("seed")


def find_variants(bundle: Path) -> tuple[Path, ...]:
    """The sibling folders `models quantize` and `train-demo` name BUNDLE-int8, BUNDLE-fp16."""
    return tuple(p for p in (bundle.with_name(f"{bundle.name}-{precision}")
                             for precision in ("int8", "fp16")) if (p / "bundle.json").is_file())


def evaluate(path: Path, options: EvaluateOptions, progress: Progress = print,
             bar: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Score the held-out set with the bundle at `path` and its variants; the report."""
    bundle = load_bundle(path)
    if bundle.manifest.precision != "fp32":
        raise UserError(f"{bundle.root}: is the {bundle.manifest.precision} variant",
                        hint="evaluate its fp32 bundle; variants beside it are compared with it")
    if options.manifest is None and trained_seed(bundle) == options.seed:
        raise UserError(f"data set {options.seed} is the one {bundle.version} was trained on",
                        hint="choose another --seed: evaluation needs chunks it never saw")
    variant_paths = find_variants(path) if options.variants is None else options.variants
    variants = [load_bundle(p) for p in variant_paths]
    for variant in variants:
        if variant.labels != bundle.labels:
            raise UserError(f"{variant.root}: its labels differ from {bundle.root}'s")
    models = [FusionModel(b, device=options.device, intra_op_threads=options.threads)
              for b in (bundle, *variants)]
    if not models[0].has_frontend:
        raise UserError(f"{bundle.root}: has no front-end graph, so it cannot score audio")
    if options.manifest is None and bundle.labels != SPECIES_NAMES:
        raise UserError(f"{bundle.root}: its labels are not the synthetic species, so synthetic "
                        "chunks cannot measure it",
                        hint="give recordings of its labels with --manifest CSV")
    clips = (recording_clips(options.manifest, bundle) if options.manifest
             else synthetic_clips(options.chunks, options.seed))
    progress(f"scoring {clips.source} with {len(models)} bundle(s)")
    counter = bar(clips.count) if bar else None
    try:
        scored, targets = score_all(models, clips, counter)
    finally:
        if counter is not None:
            counter.close()
    report: dict[str, Any] = {"held_out": clips.source, "skipped": clips.skipped,
                              "fp32": summary(scored[0], targets), "variants": []}
    for other in scored[1:]:
        figures = summary(other, targets)
        figures["agreement_with_fp32"] = agreement(scored[0], other)
        figures["macro_f1_minus_fp32"] = figures["macro_f1"] - report["fp32"]["macro_f1"]
        report["variants"].append(figures)
    if options.out is not None:
        ok = np.isfinite(scored[0].probabilities).all(axis=1)
        predicted = decisions(scored[0].probabilities[ok], bundle.thresholds())
        matrix = confusion_matrix(predicted, targets[ok])
        title = (f"{bundle.version}\n{clips.source}: macro-F1 {report['fp32']['macro_f1']:.3f}")
        report["confusion_png"] = str(plot_confusion(matrix, bundle.labels, title,
                                                     options.out / "confusion.png"))
        report["confusion_matrix"] = matrix.tolist()
    return report
