"""`soundscape models train-demo`: the demo bundle, trained on synthetic soundscapes.

Steps, all seeded:
1. write `frontend.onnx` and compute every chunk's features with it through onnxruntime
   (labelled chunks of `soundscape.synthetic`, 0-3 of its 12 species each);
2. split the chunks three ways: the branches learn on one part, the meta model on the
   branches' sigmoids over a second part they never saw (as it will see them on new
   audio), and the per-label thresholds are tuned on the third;
3. train the four branches (small profile; the embedder learns with its classifier, and
   EfficientNet's base weights learn along with its LoRA adapters, since there is no
   pretrained network to adapt here), then the meta MLP;
4. export with the project's exporter (ONNX parity-checked against PyTorch) into an fp32
   bundle with the front-end, labels and thresholds, and make its int8 variant (static
   quantization calibrated on training chunks, agreement measured on held-out ones).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundscape.bundle import BRANCHES, EMBEDDER, META, BundleFeatures
from soundscape.errors import UserError
from soundscape.models import branches
from soundscape.models.export import ExportRequest, export_bundle
from soundscape.models.frontend.graph import build_frontend
from soundscape.models.frontend.runtime import FrontEnd
from soundscape.models.labelled import TRAIN_SEED, LabelledSet, labelled_set
from soundscape.models.metrics import macro_f1, tune_thresholds
from soundscape.models.profiles import SMALL
from soundscape.models.quantize import VariantOptions, make_variant
from soundscape.models.training import FitOptions, Stack, fit, predict, unfreeze

Progress = Callable[[str], None]

#: Which front-end output each branch learns from (the bundle contract).
BRANCH_INPUTS = {"embed_classifier": "mel", "resnet50": "mel_aug", "effnet_b3_lora": "mel",
                 "wave_cnn": "waveform"}
#: Each branch's epochs relative to --epochs: cheap branches get more passes.
#: (ResNet learns the most per CPU second; the raw-waveform CNN costs the most per epoch
#: and learns the least at this size.)
EPOCH_SCALE = {"embed_classifier": 1.0, "resnet50": 3.0, "effnet_b3_lora": 1.5, "wave_cnn": 0.5}
#: Shares of the chunks for the meta model and for threshold tuning; branches get the rest.
META_SHARE = 0.2
TUNE_SHARE = 0.15
#: Fewest chunks that leave every split at least two items and the int8 calibration a batch.
MIN_CHUNKS = 20
#: Calibration items for int8 (taken from the branches' training chunks), a multiple of the
#: quantizer's calibration batch (8): onnxruntime's percentile calibrator cannot stack
#: batches of different sizes.
CALIBRATION_ITEMS = 64
CALIBRATION_BATCH = 8
META_OPTIONS = FitOptions(epochs=150, batch=64, lr=1e-2, time_shift=False)


@dataclass
class DemoOptions:
    out: Path
    chunks: int = 1600
    epochs: int = 4
    seed: int = TRAIN_SEED
    int8_out: Path | None = None  # None: no int8 variant
    threads: int = 1
    force: bool = False


@dataclass
class DemoReport:
    fp32: Path
    int8: Path | None
    validation_macro_f1: float  # on the tuning split, at the tuned thresholds
    branch_macro_f1: dict[str, float]  # each branch alone on the tuning split, at 0.5
    thresholds: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    int8_top1_agreement: float | None = None


def split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(branch rows, meta rows, tuning rows): a seeded shuffle cut in three."""
    if count < MIN_CHUNKS:
        raise UserError(f"--chunks {count} is too few to split for branches, meta model and "
                        "thresholds", hint=f"use at least {MIN_CHUNKS} (the demo bundle uses 1600)")
    order = np.random.default_rng([seed, 1]).permutation(count)
    tune = max(2, round(count * TUNE_SHARE))
    meta = max(2, round(count * META_SHARE))
    return np.sort(order[tune + meta:]), np.sort(order[tune:tune + meta]), np.sort(order[:tune])


def _branch_model(role: str, features: BundleFeatures, classes: int) -> torch.nn.Module:
    if role == "embed_classifier":
        return Stack(branches.build(EMBEDDER, SMALL, classes, features),
                     branches.build(role, SMALL, classes, features))
    return unfreeze(branches.build(role, SMALL, classes, features))


def _state_dicts(role: str, model: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """Checkpoints per bundle role (the embedder branch yields two graphs)."""
    if isinstance(model, Stack):
        return {EMBEDDER: model.parts[0].state_dict(), role: model.parts[1].state_dict()}
    return {role: model.state_dict()}


def _branch_probs(models: dict[str, torch.nn.Module], data: LabelledSet) -> np.ndarray:
    """[n, 4C] sigmoids of the four branches in the contract's order: the meta input."""
    return np.concatenate([predict(models[r], data.arrays[BRANCH_INPUTS[r]]) for r in BRANCHES],
                          axis=1).astype(np.float32)


def train_demo(options: DemoOptions, progress: Progress = print, bar: bool = False) -> DemoReport:
    """Train, export and quantize the demo bundle; see the module's docstring."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    for path in (options.out, options.int8_out):
        if path is not None and path.exists() and not options.force:
            raise UserError(f"{path} exists", hint="pass --force to replace it")
    if options.epochs < 1:
        raise UserError("--epochs must be at least 1")
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    features = BundleFeatures()
    rows, meta_rows, tune_rows = split(options.chunks, options.seed)

    with tempfile.TemporaryDirectory(prefix="soundscape-demo-") as tmp:
        work = Path(tmp)
        frontend_path = work / "frontend.onnx"
        frontend_path.write_bytes(build_frontend().SerializeToString())
        frontend = FrontEnd(frontend_path, providers=["CPUExecutionProvider"],
                            threads=options.threads)
        progress(f"{options.chunks} labelled chunks (data set {options.seed}) through "
                 "frontend.onnx ...")
        data = labelled_set(options.chunks, options.seed, frontend, bar=bar)
        seconds["features"] = time.perf_counter() - started
        labels = data.labels
        train, meta_set, tune_set = data.subset(rows), data.subset(meta_rows), data.subset(tune_rows)
        progress(f"split: {len(train)} chunks for the branches, {len(meta_set)} for the meta "
                 f"model, {len(tune_set)} for the thresholds")

        models: dict[str, torch.nn.Module] = {}
        branch_f1 = {}
        for role in BRANCHES:
            role_started = time.perf_counter()
            model = _branch_model(role, features, len(labels))
            epochs = max(1, round(options.epochs * EPOCH_SCALE[role]))
            fit(model, train.arrays[BRANCH_INPUTS[role]], train.targets, FitOptions(epochs=epochs),
                generator, desc=role, bar=bar)
            models[role] = model
            branch_f1[role] = macro_f1(predict(model, tune_set.arrays[BRANCH_INPUTS[role]]),
                                       tune_set.targets, 0.5)
            seconds[role] = time.perf_counter() - role_started
            progress(f"{role}: {epochs} epochs in {seconds[role]:.0f} s, macro-F1 alone "
                     f"{branch_f1[role]:.3f} (tuning split, threshold 0.5)")

        meta = branches.build(META, SMALL, len(labels), features)
        fit(meta, _branch_probs(models, meta_set), meta_set.targets, META_OPTIONS, generator,
            desc="meta", bar=bar)
        tune_probs = predict(meta, _branch_probs(models, tune_set))
        thresholds = tune_thresholds(tune_probs, tune_set.targets)
        validation = macro_f1(tune_probs, tune_set.targets, thresholds)
        progress(f"meta: macro-F1 {macro_f1(tune_probs, tune_set.targets, 0.5):.3f} at 0.5, "
                 f"{validation:.3f} at the tuned thresholds (tuning split)")

        checkpoints = {}
        states = {role: s for r, m in models.items() for role, s in _state_dicts(r, m).items()}
        states[META] = meta.state_dict()
        for role, state in states.items():
            checkpoints[role] = work / f"{role}.pt"
            torch.save(state, checkpoints[role])
        export_started = time.perf_counter()
        threshold_map = {label: float(t) for label, t in zip(labels, thresholds, strict=True)}
        export_bundle(ExportRequest(
            out=options.out, profile=SMALL, labels=labels, features=features,
            checkpoints=checkpoints, random_seed=None, frontend=frontend_path,
            thresholds=threshold_map, force=options.force,
            training={"data": f"soundscape.synthetic, data set {options.seed}, "
                              f"{options.chunks} chunks",
                      "seed": options.seed, "chunks": options.chunks, "epochs": options.epochs,
                      "split": {"branches": len(train), "meta": len(meta_set),
                                "thresholds": len(tune_set)},
                      "validation_macro_f1": round(validation, 4),
                      "branch_macro_f1": {r: round(v, 4) for r, v in branch_f1.items()}},
        ), progress=progress)
        seconds["export"] = time.perf_counter() - export_started

        report = DemoReport(options.out, options.int8_out, validation, branch_f1, threshold_map,
                            seconds)
        if options.int8_out is not None:
            int8_started = time.perf_counter()
            items = min(CALIBRATION_ITEMS, len(train)) // CALIBRATION_BATCH * CALIBRATION_BATCH
            calibration = train.subset(slice(0, items)).save_features(work / "calibration.npz")
            held_out = tune_set.save_features(work / "held_out.npz")
            variant = make_variant(options.out, options.int8_out, "int8",
                                   VariantOptions(calibration=calibration, held_out=held_out),
                                   force=options.force, progress=progress)
            report.int8_top1_agreement = variant.agreement.top1
            seconds["int8"] = time.perf_counter() - int8_started
    seconds["total"] = time.perf_counter() - started
    return report

