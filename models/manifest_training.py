"""`soundscape models train --manifest`: a fusion bundle trained on a user's labelled recordings.

Steps, all seeded (the same seed, data and thread count give the same graphs):
1. check the manifest as a whole (models/training_manifest.py) and split its groups
   (stations, recordings) into training and validation, no group on both sides;
2. cut every span into 10 s chunks; for the training side also make augmented copies
   before the front-end (background mixing, gain, time shift: models/augment.py), so the
   branches learn exactly the features the workers will compute;
3. compute the features with the parent bundle's `frontend.onnx` (by default the demo
   bundle's) through onnxruntime;
4. train the four branches (small profile, fresh weights: a bundle holds ONNX graphs, not
   the PyTorch weights to start from) with class-weighted BCE (rare labels weigh more),
   mixup and SpecAugment per batch, evaluating validation macro-F1 after every epoch and
   keeping the best state (early stopping after `patience` epochs without gain); then the
   meta MLP on the branches' outputs over the training side, stopped the same way (with
   two splits there is no third for it: stopping on validation keeps it from trusting
   branches that learnt their training chunks by heart);
5. tune per-label thresholds on validation and export a versioned fp32 bundle (parity
   checked) whose manifest records under origin.training where it came from; optionally
   its int8 variant.

A parent with an `audio_embedder` (BirdNET's embedding, models/birdnet/fusion_embedder.py):
its embedder graph computes every chunk's embedding (mean over its 3 s windows, as the
worker does), `embed_classifier` is a linear head trained on those, and the output bundle
keeps the parent's embedder graph, window parameters and licence. Its int8 variant is
refused (the quantizer calibrates the mel embedder only).
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from soundscape.bundle import (
    BRANCHES,
    EMBEDDER,
    META,
    MANIFEST,
    Bundle,
    BundleFeatures,
    Manifest,
    WindowParams,
    combined_sha256,
    graph_entry,
    load_bundle,
    write_manifest,
)
from soundscape.errors import UserError
from soundscape.models import DEMO_BUNDLE, branches
from soundscape.models.augment import augment_pcm, mixup, spec_augment
from soundscape.models.demo import BRANCH_INPUTS, EPOCH_SCALE
from soundscape.models.export import ExportRequest, export_bundle
from soundscape.models.metrics import class_scores, macro_f1, tune_thresholds
from soundscape.models.profiles import SMALL
from soundscape.models.quantize import VariantOptions, make_variant
from soundscape.models.training import Stack, predict, training_device, unfreeze
from soundscape.models.training_manifest import (
    TRAIN,
    VALIDATION,
    ChunkSpec,
    chunk_audio,
    chunk_specs,
    class_counts,
    read_label_file,
    read_training_manifest,
    split_groups,
    split_warnings,
    targets,
)

Progress = Callable[[str], None]

#: `--labels manifest`: the manifest's own labels instead of the parent's.
FROM_MANIFEST = "manifest"
#: Cap of a label's BCE positive weight (negatives / positives): a label with 2 examples
#: in 500 chunks should weigh more, not 250 times more.
POS_WEIGHT_CAP = 10.0
#: Per batch: share of batches mixed up; SpecAugment on every mel batch.
MIXUP_SHARE = 0.5
BRANCH_LR = 3e-3
META_LR = 1e-2
BATCH = 32
META_BATCH = 64
#: The meta model is tiny: it gets many passes, and patience in proportion.
META_EPOCHS = 150
META_PATIENCE_SCALE = 10
#: A validation macro-F1 must rise by more than this to count as a gain.
MIN_GAIN = 1e-4
FEATURE_BATCH = 16
CALIBRATION_ITEMS = 64
CALIBRATION_BATCH = 8
WORST = 5


@dataclass
class TrainOptions:
    manifest: Path
    out: Path
    parent: Path = DEMO_BUNDLE
    labels: Path | str | None = None  # a file, FROM_MANIFEST, or None: the parent's labels
    epochs: int = 20
    patience: int = 3
    seed: int = 0
    threads: int = 1
    version: str | None = None
    int8_out: Path | None = None
    force: bool = False
    augment: int = 1  # augmented copies of every training chunk
    device: str = "auto"  # auto: a GPU when PyTorch sees one (results then vary a little)


@dataclass
class TrainReport:
    fp32: Path
    int8: Path | None
    version: str
    validation_macro_f1: float
    per_class_f1: dict[str, float | None]
    worst: list[tuple[str, float | None]]
    thresholds: dict[str, float]
    epochs: dict[str, int]
    train_clips: int  # training chunks including augmented copies
    validation_clips: int
    seconds_per_epoch: float  # one pass of all four branches over the training clips
    seconds_per_1000_clips: float
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    int8_top1_agreement: float | None = None


@dataclass
class _Run:
    """One model's training: the epochs it ran and their figures."""

    epochs: int = 0
    best_epoch: int = 0
    best_f1: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def mean_epoch_seconds(self) -> float:
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else 0.0


# ---- data --------------------------------------------------------------------------------

def _label_set(options: TrainOptions, parent: Bundle) -> tuple[tuple[str, ...] | None, str]:
    if options.labels is None:
        return parent.labels, f"the parent bundle's labels ({parent.version})"
    if str(options.labels) == FROM_MANIFEST:
        return None, "the manifest's labels"
    return read_label_file(Path(options.labels)), f"--labels {options.labels}"


def _check_parent(parent: Bundle) -> None:
    if parent.kind != "fusion" or not parent.has_frontend:
        raise UserError(f"{parent.root}: the parent must be a fusion bundle with a front-end "
                        f"graph (this is a {parent.kind} bundle"
                        f"{'' if parent.has_frontend else ' without frontend.onnx'})",
                        hint=f"use the demo bundle ({DEMO_BUNDLE}) or a bundle this command made")
    if parent.manifest.precision != "fp32":
        raise UserError(f"{parent.root}: is the {parent.manifest.precision} variant",
                        hint="give its fp32 bundle as --parent")


class _Features:
    """The parent's front-end (and audio embedder, if it has one) over PCM batches."""

    def __init__(self, parent: Bundle, threads: int) -> None:
        import onnxruntime as ort

        from soundscape.models.frontend.runtime import FrontEnd

        self.frontend = FrontEnd(parent.path("frontend"), providers=["CPUExecutionProvider"],
                                 threads=threads)
        self.audio: WindowParams | None = parent.manifest.audio_embedder
        self.rate = parent.manifest.features.sample_rate
        self.embedder = None
        if self.audio is not None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            self.embedder = ort.InferenceSession(str(parent.path(EMBEDDER)), options,
                                                 providers=["CPUExecutionProvider"])

    def __call__(self, pcm: np.ndarray) -> dict[str, np.ndarray]:
        arrays = self.frontend.run(pcm)
        if self.embedder is not None:
            arrays["embedding"] = self._embed(pcm)
        return arrays

    def _embed(self, pcm: np.ndarray) -> np.ndarray:
        """As FusionModel._embed_audio: resample to the embedder's rate, cut its windows,
        embed, mean over each chunk's windows."""
        import soxr

        from soundscape.windowed import window_spans

        params = self.audio
        assert params is not None and self.embedder is not None
        resampled = np.stack([soxr.resample(row, self.rate, params.sample_rate, quality="HQ")
                              for row in pcm]).astype(np.float32)
        spans = window_spans(resampled.shape[1], params.samples, params.hop_samples)
        windows = np.zeros((len(resampled), len(spans), params.samples), np.float32)
        for w, (start, end) in enumerate(spans):
            stop = min(end, resampled.shape[1])
            windows[:, w, :stop - start] = resampled[:, start:stop]
        flat = windows.reshape(-1, params.samples)
        parts = [self.embedder.run(["embedding"], {"audio": flat[i:i + 64]})[0]
                 for i in range(0, len(flat), 64)]
        return np.concatenate(parts).reshape(len(pcm), len(spans), -1).mean(axis=1)


def _featurize(batches: list[np.ndarray], features: _Features, bar: bool, desc: str
               ) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    with tqdm(total=sum(len(b) for b in batches), desc=desc, unit="chunk", disable=not bar,
              leave=False) as progress:
        for pcm in batches:
            for name, value in features(pcm).items():
                parts.setdefault(name, []).append(value.astype(np.float32))
            progress.update(len(pcm))
    return {name: np.concatenate(value) for name, value in parts.items()}


def _pcm(chunks: list[ChunkSpec], rate: int, samples: int) -> np.ndarray:
    out = np.empty((len(chunks), samples), np.float32)
    for i, pcm in enumerate(chunk_audio(chunks, rate, samples)):
        out[i] = pcm
    return out


def _batches(array: np.ndarray, size: int = FEATURE_BATCH) -> list[np.ndarray]:
    return [array[i:i + size] for i in range(0, len(array), size)]


# ---- training ----------------------------------------------------------------------------

def pos_weights(y: np.ndarray, cap: float = POS_WEIGHT_CAP) -> np.ndarray:
    """Per label, negatives / positives clipped to [1, cap] (1 for a label never present)."""
    positives = (y > 0.5).sum(axis=0).astype(np.float64)
    negatives = len(y) - positives
    weight = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return np.clip(weight, 1.0, cap).astype(np.float32)


def _score(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(macro-F1 at thresholds tuned on these items, mean BCE): what early stopping reads."""
    f1 = macro_f1(probs, y, tune_thresholds(probs, y))
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return (0.0 if np.isnan(f1) else f1), loss


def _augment_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, kind: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    if kind in ("mel", "mel_aug", "waveform"):
        shifts = rng.integers(0, x.shape[-1], size=len(x))
        x = np.stack([np.roll(item, int(s), axis=-1) for item, s in zip(x, shifts, strict=True)])
    if kind in ("mel", "mel_aug"):
        x = spec_augment(x, rng)
    if kind != "branch_probs" and rng.random() < MIXUP_SHARE:
        x, y = mixup(x, y, rng)
    return x, y


def train_model(model: nn.Module, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, *, kind: str, epochs: int, patience: int, lr: float, batch: int,
                pos_weight: np.ndarray, generator: torch.Generator, rng: np.random.Generator,
                desc: str, bar: bool, progress: Progress) -> _Run:
    """Train in place with early stopping on validation macro-F1 (the validation loss
    breaks ties); the model ends with its best epoch's weights, in evaluation mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    per_epoch = -(-len(x) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, pct_start=0.2,
                                                   total_steps=max(1, epochs * per_epoch))
    device = next(model.parameters()).device
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(pos_weight).to(device))
    run = _Run()
    best_state = copy.deepcopy(model.state_dict())
    best_f1, best_loss, waited = -1.0, float("inf"), 0
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator).numpy()
        total = 0.0
        with tqdm(total=per_epoch, desc=f"{desc} {epoch}/{epochs}", unit="batch",
                  disable=not bar, leave=False) as counter:
            for start in range(0, len(order), batch):
                rows = order[start:start + batch]
                counter.update(1)
                if len(rows) < 2:  # batch norm needs two items
                    continue
                xb, yb = x[rows], y[rows]
                if kind != "embedding" and kind != "branch_probs":
                    xb, yb = _augment_batch(xb, yb, rng, kind)
                loss = loss_fn(model(torch.from_numpy(np.ascontiguousarray(xb)).to(device)),
                               torch.from_numpy(np.ascontiguousarray(yb)).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(rows)
        seconds = time.perf_counter() - started
        f1, val_loss = _score(predict(model, x_val), y_val)
        run.history.append({"epoch": epoch, "loss": total / len(x), "validation_loss": val_loss,
                            "validation_macro_f1": f1, "seconds": seconds})
        run.epochs = epoch
        if f1 > best_f1 + MIN_GAIN or (f1 >= best_f1 - MIN_GAIN and val_loss < best_loss - MIN_GAIN):
            best_f1, best_loss, waited = max(f1, best_f1), val_loss, 0
            best_state = copy.deepcopy(model.state_dict())
            run.best_epoch, run.best_f1 = epoch, f1
        else:
            waited += 1
        if kind != "branch_probs" or epoch == epochs or waited >= patience:
            progress(f"{desc}: epoch {epoch}/{epochs} in {seconds:.1f} s, loss {total / len(x):.4f}, "
                     f"validation macro-F1 {f1:.3f} (best {best_f1:.3f} at epoch {run.best_epoch})")
        if waited >= patience:
            progress(f"{desc}: no gain for {patience} epoch(s); keeping epoch {run.best_epoch}")
            break
    model.load_state_dict(best_state)
    model.eval()
    return run


def _branch_model(role: str, classes: int, features: BundleFeatures, width: int | None) -> nn.Module:
    """A fresh branch; with an audio embedder, embed_classifier is a linear head over its
    `width`-d embedding."""
    if role == "embed_classifier":
        if width is not None:
            return nn.Linear(width, classes)
        return Stack(branches.build(EMBEDDER, SMALL, classes, features),
                     branches.build(role, SMALL, classes, features))
    return unfreeze(branches.build(role, SMALL, classes, features))


def _input_of(role: str, audio_embedder: bool) -> str:
    return "embedding" if role == "embed_classifier" and audio_embedder else BRANCH_INPUTS[role]


# ---- the command -------------------------------------------------------------------------

def train_manifest(options: TrainOptions, progress: Progress = print, bar: bool = False) -> TrainReport:
    """Check, train, export (and quantize) a bundle; see the module's docstring."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    for path in (options.out, options.int8_out):
        if path is not None and path.exists() and not options.force:
            raise UserError(f"{path} exists", hint="pass --force to replace it")
    if options.epochs < 1 or options.patience < 1 or options.augment < 0:
        raise UserError("--epochs and --patience must be at least 1, --augment at least 0")
    parent = load_bundle(options.parent)
    _check_parent(parent)
    audio_embedder = parent.manifest.audio_embedder is not None
    if audio_embedder and options.int8_out is not None:
        raise UserError(f"{parent.version} embeds with an audio embedder: its int8 variant "
                        "cannot be made here", hint="train without --int8")
    features = parent.manifest.features
    label_set, label_source = _label_set(options, parent)
    manifest = read_training_manifest(
        options.manifest, label_set, label_source=label_source,
        unknown_hint=("to train on other labels, pass --labels manifest (the labels the manifest "
                      "uses) or --labels FILE (one a line)"))
    labels = manifest.labels
    assignment = split_groups(manifest.rows, options.seed)
    warnings = [*manifest.warnings, *split_warnings(manifest.rows, assignment, labels)]
    for line in warnings:
        progress(f"warning: {line}")
    chunk_s = features.samples / features.sample_rate
    chunks = chunk_specs(manifest, chunk_s)
    train_chunks = [c for c in chunks if assignment[c.group] == TRAIN]
    val_chunks = [c for c in chunks if assignment[c.group] == VALIDATION]
    if len(train_chunks) < 2 or not val_chunks:
        raise UserError(f"{options.manifest}: {len(train_chunks)} training and {len(val_chunks)} "
                        "validation chunks: too few to train", hint="list more audio")
    progress(f"{len(manifest.rows)} rows, {len(chunks)} chunks of {chunk_s:g} s; groups: "
             f"{sum(s == TRAIN for s in assignment.values())} train, "
             f"{sum(s == VALIDATION for s in assignment.values())} validation; "
             f"{len(labels)} labels ({label_source})")

    torch.set_num_threads(options.threads)
    device = training_device(options.device)
    if device.type == "cuda":
        progress(f"training on {torch.cuda.get_device_name(device)}")
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng([options.seed, 5])
    featurize = _Features(parent, options.threads)

    pcm = _pcm(train_chunks, features.sample_rate, features.samples)
    y_orig = targets(train_chunks, labels)
    copies_pcm, copies_y = [], []
    augment_rng = np.random.default_rng([options.seed, 3])
    for _ in range(options.augment):
        for i in range(len(pcm)):
            a, t = augment_pcm(pcm[i], y_orig[i], pcm, y_orig, augment_rng, index=i)
            copies_pcm.append(a)
            copies_y.append(t)
    train_pcm = np.concatenate([pcm, np.stack(copies_pcm)]) if copies_pcm else pcm
    del pcm, copies_pcm
    y = np.concatenate([y_orig, np.stack(copies_y)]) if copies_y else y_orig
    progress(f"features of {len(train_pcm)} training chunks ({len(train_chunks)} + "
             f"{len(train_pcm) - len(train_chunks)} augmented) and {len(val_chunks)} validation "
             f"chunks through {parent.version}'s frontend.onnx ...")
    train = _featurize(_batches(train_pcm), featurize, bar, "train features")
    del train_pcm
    val = _featurize(_batches(_pcm(val_chunks, features.sample_rate, features.samples)),
                     featurize, bar, "validation features")
    y_val = targets(val_chunks, labels)
    seconds["features"] = time.perf_counter() - started

    weights = pos_weights(y)
    models: dict[str, nn.Module] = {}
    runs: dict[str, _Run] = {}
    width = parent.manifest.audio_embedder.embedding_dim if audio_embedder else None
    for index, role in enumerate(BRANCHES):
        role_started = time.perf_counter()
        torch.manual_seed(options.seed * 1000 + index)
        model = _branch_model(role, len(labels), features, width).to(device)
        name = _input_of(role, audio_embedder)
        epochs = max(1, round(options.epochs * EPOCH_SCALE[role]))
        runs[role] = train_model(model, train[name], y, val[name], y_val, kind=name, epochs=epochs,
                                 patience=options.patience, lr=BRANCH_LR, batch=BATCH,
                                 pos_weight=weights, generator=generator, rng=rng, desc=role,
                                 bar=bar, progress=progress)
        models[role] = model
        seconds[role] = time.perf_counter() - role_started

    def branch_probs(arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([predict(models[r], arrays[_input_of(r, audio_embedder)])
                               for r in BRANCHES], axis=1).astype(np.float32)

    meta_started = time.perf_counter()
    torch.manual_seed(options.seed * 1000 + len(BRANCHES))
    meta = branches.build(META, SMALL, len(labels), features).to(device)
    train_probs, val_probs = branch_probs(train), branch_probs(val)
    runs[META] = train_model(meta, train_probs, y, val_probs, y_val, kind="branch_probs",
                             epochs=META_EPOCHS, patience=options.patience * META_PATIENCE_SCALE,
                             lr=META_LR, batch=META_BATCH, pos_weight=weights, generator=generator,
                             rng=rng, desc="meta", bar=bar, progress=progress)
    seconds[META] = time.perf_counter() - meta_started
    probs = predict(meta, val_probs)
    for model in (*models.values(), meta):
        model.to("cpu")  # export and the parity checks run on the CPU
    thresholds = tune_thresholds(probs, y_val)
    validation = macro_f1(probs, y_val, thresholds)
    scores = class_scores(probs, y_val, thresholds, labels)
    per_class = {c.label: c.f1 for c in scores}
    worst = sorted(((c.label, c.f1) for c in scores if c.f1 is not None),
                   key=lambda item: (item[1], item[0]))[:WORST]
    branch_f1 = {r: round(runs[r].best_f1, 4) for r in BRANCHES}
    progress(f"validation macro-F1 {validation:.3f} at the tuned thresholds "
             f"({len(val_chunks)} chunks)")

    per_epoch = sum(runs[r].mean_epoch_seconds for r in BRANCHES)
    per_1000 = per_epoch / len(y) * 1000
    threshold_map = {label: float(t) for label, t in zip(labels, thresholds, strict=True)}
    training = {
        "data": f"manifest {manifest.path.name}",
        "manifest": {"path": str(manifest.path.absolute()), "sha256": manifest.sha256,
                     "rows": len(manifest.rows)},
        "labels_from": label_source,
        "parent": {"version": parent.version, "path": str(parent.root)},
        "groups": {side: sorted(g for g, s in assignment.items() if s == side)
                   for side in (TRAIN, VALIDATION)},
        "counts": {TRAIN: class_counts(train_chunks, labels),
                   VALIDATION: class_counts(val_chunks, labels)},
        "chunks": {TRAIN: len(train_chunks), "augmented": len(y) - len(train_chunks),
                   VALIDATION: len(val_chunks)},
        "seed": options.seed, "threads": options.threads,
        "max_epochs": options.epochs, "patience": options.patience,
        "epochs": {role: run.epochs for role, run in runs.items()},
        "best_epoch": {role: run.best_epoch for role, run in runs.items()},
        "validation_macro_f1": round(validation, 4) if np.isfinite(validation) else None,
        "per_class_f1": {k: (round(v, 4) if v is not None else None) for k, v in per_class.items()},
        "branch_macro_f1": branch_f1,
        "seconds_per_epoch": round(per_epoch, 3),
        "seconds_per_1000_clips": round(per_1000, 3),
        "warnings": warnings,
    }

    export_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soundscape-train-") as tmp:
        work = Path(tmp)
        checkpoints = {}
        states: dict[str, dict[str, Any]] = {}
        for role, model in models.items():
            if isinstance(model, Stack):
                states[EMBEDDER], states[role] = (model.parts[0].state_dict(),
                                                  model.parts[1].state_dict())
            elif isinstance(model, nn.Linear):  # swapped for the linear head after export
                torch.manual_seed(options.seed)
                states[EMBEDDER] = branches.build(EMBEDDER, SMALL, len(labels), features).state_dict()
                states[role] = branches.build(role, SMALL, len(labels), features).state_dict()
            else:
                states[role] = model.state_dict()
        states[META] = meta.state_dict()
        for role, state in states.items():
            checkpoints[role] = work / f"{role}.pt"
            torch.save(state, checkpoints[role])
        export_bundle(ExportRequest(
            out=options.out, profile=SMALL, labels=labels, features=features,
            checkpoints=checkpoints, random_seed=None, frontend=parent.path("frontend"),
            version=options.version, thresholds=threshold_map, force=options.force,
            training=training,
        ), progress=progress)
        if audio_embedder:
            _swap_audio_embedder(options.out, parent, models["embed_classifier"], options.version)
        seconds["export"] = time.perf_counter() - export_started
        bundle = load_bundle(options.out)
        report = TrainReport(options.out, options.int8_out, bundle.version, validation, per_class,
                             worst, threshold_map, {r: run.epochs for r, run in runs.items()},
                             len(y), len(y_val), per_epoch, per_1000, warnings, seconds)
        if options.int8_out is not None:
            int8_started = time.perf_counter()
            items = min(CALIBRATION_ITEMS, len(y)) // CALIBRATION_BATCH * CALIBRATION_BATCH
            if items == 0:
                raise UserError("too few training chunks to calibrate an int8 variant",
                                hint=f"at least {CALIBRATION_BATCH}; or drop --int8")
            names = ("waveform", "mel", "mel_aug")
            calibration = work / "calibration.npz"
            np.savez(calibration, **{n: train[n][:items] for n in names})
            held_out = work / "held_out.npz"
            np.savez(held_out, **{n: val[n] for n in names})
            variant = make_variant(options.out, options.int8_out, "int8",
                                   VariantOptions(calibration=calibration, held_out=held_out),
                                   force=options.force, progress=progress)
            report.int8_top1_agreement = variant.agreement.top1
            seconds["int8"] = time.perf_counter() - int8_started
    seconds["total"] = time.perf_counter() - started
    return report


def _swap_audio_embedder(out: Path, parent: Bundle, head: nn.Module, version: str | None) -> None:
    """Put the parent's audio embedder and the trained linear head into the exported
    bundle (in place of the placeholder mel embedder), as with_audio_embedder does."""
    import onnx
    import onnxruntime as ort

    from soundscape.models.birdnet.fusion_embedder import linear_head

    assert isinstance(head, nn.Linear) and parent.manifest.audio_embedder is not None
    weights = head.weight.detach().numpy().T.copy()
    bias = head.bias.detach().numpy().copy()
    shutil.copyfile(parent.path(EMBEDDER), out / "embedder.onnx")
    onnx.save(linear_head(weights, bias), str(out / "embed_classifier.onnx"))
    data = json.loads((out / MANIFEST).read_text())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for role in (EMBEDDER, "embed_classifier"):
        session = ort.InferenceSession(str(out / f"{role}.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        data["graphs"][role] = graph_entry(out, f"{role}.onnx", session).model_dump()
    data["audio_embedder"] = parent.manifest.audio_embedder.model_dump()
    if version is None:
        digest = combined_sha256(Manifest.model_validate(data).graphs)[:12]
        data["version"] = f"fusion-small-c{data['num_classes']}-embedder-{digest}"
    extra = parent.manifest.model_extra or {}
    if extra.get("licence"):
        data["licence"] = extra["licence"]
    origin = data.setdefault("origin", {})
    origin["audio_embedder"] = (extra.get("origin") or {}).get("audio_embedder") or {
        "bundle": parent.version}
    origin["weights"]["embedder"] = f"{parent.version}: embedder.onnx"
    write_manifest(out, Manifest.model_validate(data))
    load_bundle(out)
