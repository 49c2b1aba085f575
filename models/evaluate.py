"""`soundscape models evaluate`: how well a bundle detects species, through the runtime path.

Audio goes in as workers feed it (`FusionModel.score_audio`: per-chunk checks, the
bundle's front-end, embedder, branches, meta model), decisions use the bundle's own
per-label thresholds, and the figures are per-label precision, recall and F1, their
macro mean, per-label average precision (ranking quality, free of any threshold) and its
macro mean, the worst labels, confusion pairs, calibration (reliability bins and ECE), and
a confusion matrix drawn to a PNG. Precision variants (int8, fp16) are scored on the same
audio and get the same figures, compared with the fp32 bundle. With `smooth`, recordings'
windows are also scored after neighbour-chunk smoothing (models/smoothing.py), side by side.
With `out`, report.json, report.html (models/evaluation_html.py) and the PNGs go there.

The audio is either held-out synthetic chunks (a data set seed the demo bundle never
trained on) or real recordings listed in a CSV of (file, label): each file is cut into
10 s windows that all carry the file's labels.
"""

from __future__ import annotations

import csv
import json
import math
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
    average_precisions,
    class_scores,
    confusion_matrix,
    confusion_pairs,
    decision_agreement,
    decisions,
    macro_f1,
    precision_recall_curve,
    reliability,
)
from soundscape.models.smoothing import SmoothingOptions, smooth
from soundscape.synthetic import SPECIES_NAMES

Progress = Callable[[str], None]
#: A recording's last partial window is scored (zero-padded) when it is at least this long.
MIN_TAIL_S = 5.0
#: Chunks scored per FusionModel call.
BATCH = 16
#: Labels listed as the worst (by F1, then AP).
WORST = 20
#: Confusion pairs listed per bundle.
PAIRS = 20
#: Worst labels whose precision-recall curves the HTML page draws.
PR_CURVES = 5


@dataclass
class Clips:
    """Audio windows to score with their multi-hot truth, made batch by batch on demand."""

    source: str
    count: int
    batches: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]]  # batch -> (pcm, targets)
    skipped: list[str] = field(default_factory=list)  # why some files or windows were left out
    # Per clip (group, position): the recording file and the window's index in it, so
    # neighbour-chunk smoothing knows which windows follow each other. None: independent clips.
    sequence: list[tuple[str, int]] | None = None


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
    """10 s windows of every file the CSV lists, each with its file's labels; or, for a
    `models train` manifest (header path,start,end,labels,group), 10 s chunks of its
    labelled spans, checked as training checks them (every problem named by its row)."""
    from soundscape.models import training_manifest as spans

    labels = bundle.labels
    features = bundle.manifest.features
    if spans.is_training_manifest(path):
        manifest = spans.read_training_manifest(path, labels,
                                                label_source=f"{bundle.version}'s labels")
        chunk_s = features.samples / features.sample_rate
        chunks = spans.chunk_specs(manifest, chunk_s)
        truth = spans.targets(chunks, labels)
        # (file, position): a file's chunks in time order, a gap where spans do not meet
        keys: list[tuple[str, int]] = [("", 0)] * len(chunks)
        ends: dict[str, tuple[int, float]] = {}
        for i in sorted(range(len(chunks)), key=lambda i: (str(chunks[i].row.path), chunks[i].start)):
            file = str(chunks[i].row.path)
            position, end = ends.get(file, (-2, -1.0))
            position += 1 if abs(chunks[i].start - end) < 1e-6 else 2
            keys[i] = (file, position)
            ends[file] = (position, chunks[i].end)

        def chunk_batches(size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(chunks), size):
                part = chunks[start:start + size]
                pcm = list(spans.chunk_audio(part, features.sample_rate, features.samples))
                yield np.stack(pcm), truth[start:start + size]

        return Clips(f"{len(chunks)} chunks of {len(manifest.rows)} labelled spans from "
                     f"{path.name}", len(chunks), chunk_batches, [], keys)
    files = read_manifest_csv(path, labels)
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    sequence: list[tuple[str, int]] = []  # (file, window index): consecutive windows of a file
    skipped = []
    for file, names in files.items():
        target = np.array([label in names for label in labels], dtype=np.float32)
        try:
            parts = _windows(file, features.sample_rate, features.samples)
        except Exception as exc:  # soundfile raises LibsndfileError, OSError, RuntimeError
            skipped.append(f"{file}: cannot read it ({exc})")
            continue
        windows += [(w, target) for w in parts]
        sequence += [(str(file), index) for index in range(len(parts))]
    if not windows:
        raise UserError(f"{path}: no audio could be read", hint="; ".join(skipped[:3]))

    def batches(size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(windows), size):
            part = windows[start:start + size]
            yield np.stack([w for w, _ in part]), np.stack([t for _, t in part])

    return Clips(f"{len(windows)} windows of {len(files) - len(skipped)} recordings from "
                 f"{path.name}", len(windows), batches, skipped, sequence)


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


def _defined(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (no positives, nothing scored) is null."""
    return None if math.isnan(value) else float(value)


def summary(scored: Scored, targets: np.ndarray) -> dict[str, Any]:
    """Figures of one bundle over the windows it scored."""
    ok = np.isfinite(scored.probabilities).all(axis=1)
    probs, truth = scored.probabilities[ok], targets[ok]
    thresholds = scored.bundle.thresholds()
    labels = scored.bundle.labels
    classes = class_scores(probs, truth, thresholds, labels)
    ap = average_precisions(probs, truth)
    rows = [vars(c) | {"ap": _defined(a)} for c, a in zip(classes, ap, strict=True)]
    # Worst first: lowest F1, ties broken by the lower AP (a label without positives last).
    worst = sorted((r for r in rows if r["f1"] is not None),
                   key=lambda r: (r["f1"], math.inf if r["ap"] is None else r["ap"], r["label"]))
    bins, ece = reliability(probs, truth)
    defined = ap[~np.isnan(ap)]
    return {
        "version": scored.bundle.version,
        "precision": scored.bundle.manifest.precision,
        "path": str(scored.bundle.root),
        "scored": int(ok.sum()),
        "refused": {str(i): why for i, why in sorted(scored.errors.items())},
        "macro_f1": macro_f1(probs, truth, thresholds),
        "macro_ap": float(defined.mean()) if len(defined) else None,
        "per_class": rows,
        "worst": [r["label"] for r in worst[:WORST]],
        "confusion_pairs": [vars(p) for p in confusion_pairs(decisions(probs, thresholds), truth,
                                                             labels, PAIRS)],
        "calibration": {"bins": [vars(b) for b in bins], "ece": _defined(ece)},
        "thresholds": dict(zip(labels, map(float, thresholds), strict=True)),
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
    out: Path | None = None  # where report.json, report.html and the PNGs go; None: nowhere
    smooth: bool = False  # also score recordings after neighbour-chunk smoothing
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


def smoothing_report(scored: list[Scored], targets: np.ndarray, clips: Clips, smooth_it: bool,
                     weights: SmoothingOptions = SmoothingOptions()
                     ) -> tuple[dict[str, Any], list[Scored]]:
    """Every bundle's macro-F1, macro-AP and ECE without and with neighbour-chunk smoothing
    (at the same thresholds), and the smoothed scores; why not, when it cannot be measured."""
    if not smooth_it:
        return {"measured": False, "why": "not asked for (--smooth)"}, []
    if clips.sequence is None:
        return {"measured": False,
                "why": "synthetic chunks are independent draws with no neighbours in time; "
                       "give recordings with --manifest"}, []
    smoothed = [Scored(s.bundle, smooth(s.probabilities, clips.sequence, weights), s.errors)
                for s in scored]
    rows = []
    for plain, after in zip(scored, smoothed, strict=True):
        before, figures = summary(plain, targets), summary(after, targets)
        row: dict[str, Any] = {"version": before["version"], "precision": before["precision"]}
        for key, get in (("macro_f1", lambda f: f["macro_f1"]),
                         ("macro_ap", lambda f: f["macro_ap"]),
                         ("ece", lambda f: f["calibration"]["ece"])):
            without, with_ = get(before), get(figures)
            change = None if without is None or with_ is None else with_ - without
            row[key] = {"without": without, "with": with_, "change": change}
        row["worst_with"] = figures["worst"]
        rows.append(row)
    return {"measured": True, "weights": vars(weights), "windows": len(clips.sequence),
            "groups": len({group for group, _ in clips.sequence}), "bundles": rows}, smoothed


def worst_curves(report: dict[str, Any], scored: list[Scored], smoothed: list[Scored],
                 targets: np.ndarray) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Precision-recall curves of the fp32 bundle's worst labels (those some window holds),
    for every bundle, and for the smoothed fp32 bundle when smoothing was measured."""
    labels = scored[0].bundle.labels
    ap = {row["label"]: row["ap"] for row in report["fp32"]["per_class"]}
    chosen = [label for label in report["fp32"]["worst"] if ap[label] is not None][:PR_CURVES]
    named = [(f"{s.bundle.manifest.precision}", s) for s in scored]
    named += [(f"{s.bundle.manifest.precision} smoothed", s) for s in smoothed[:1]]
    curves = {}
    for label in chosen:
        column = labels.index(label)
        lines = []
        for name, one in named:
            ok = np.isfinite(one.probabilities).all(axis=1)
            precision, recall = precision_recall_curve(one.probabilities[ok, column],
                                                       targets[ok, column])
            lines.append((name, precision, recall))
        curves[label] = lines
    return curves


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
    report["smoothing"], smoothed = smoothing_report(scored, targets, clips, options.smooth)
    if options.out is not None:
        from soundscape.models.evaluation_html import write_html

        ok = np.isfinite(scored[0].probabilities).all(axis=1)
        predicted = decisions(scored[0].probabilities[ok], bundle.thresholds())
        matrix = confusion_matrix(predicted, targets[ok])
        title = (f"{bundle.version}\n{clips.source}: macro-F1 {report['fp32']['macro_f1']:.3f}")
        report["confusion_png"] = str(plot_confusion(matrix, bundle.labels, title,
                                                     options.out / "confusion.png"))
        report["confusion_matrix"] = matrix.tolist()
        html, report["plots"] = write_html(options.out, report,
                                           worst_curves(report, scored, smoothed, targets))
        report["report_html"] = str(html)
        report["report_json"] = str(options.out / "report.json")
        (options.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
