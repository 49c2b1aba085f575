"""Turn PyTorch branches (checkpoints or fresh random weights) into a checked bundle.

Each graph is exported with torch.onnx's dynamo exporter (opset 18, a dynamic batch axis
named `batch`), then run by onnxruntime next to PyTorch on three random synthetic clips
(an odd batch size): the largest absolute difference is reported and must stay within
tolerance. The bundle is written
to a sibling temporary folder and moved into place only when complete, so a failed
export never leaves a half bundle where a worker could find it.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from soundscape.bundle import (
    BRANCHES,
    EMBEDDER,
    FRONTEND,
    META,
    BundleFeatures,
    GraphEntry,
    Manifest,
    TensorSpec,
    check_graph_io,
    combined_sha256,
    default_thresholds,
    expected_io,
    graph_entry,
    labels_entry,
    load_bundle,
    write_manifest,
)
from soundscape.errors import UserError
from soundscape.models import branches
from soundscape.models.profiles import Profile
from soundscape.models.samples import (
    CALIBRATION_SEED,
    SampleSet,
    onnx_frontend,
    random_input,
    sample_set,
    synthetic_set,
)

OPSET = 18
#: Parity bound: |onnxruntime - PyTorch| <= PARITY_RTOL * max(1, max |PyTorch output|).
PARITY_RTOL = 1e-3
PARITY_SAMPLES = 3  # an odd batch size: a batch axis baked in at 2 would fail
PARITY_SEED = 2_000_000

Progress = Callable[[str], None]
Contract = dict[str, dict[str, list[TensorSpec]]]


@dataclass
class GraphReport:
    role: str
    entry: GraphEntry
    bytes: int
    max_abs_diff: float | None  # None for graphs copied in (the front-end)
    tolerance: float | None
    seconds: float


@dataclass
class ExportRequest:
    out: Path
    profile: Profile
    labels: Sequence[str]
    features: BundleFeatures
    checkpoints: dict[str, Path]
    random_seed: int | None  # fresh weights for roles without a checkpoint; None: refuse
    frontend: Path | None = None
    version: str | None = None
    calibration: Path | None = None  # .npz of branch inputs for initialising random weights
    calibration_samples: int = 32
    thresholds: dict[str, float] | None = None
    force: bool = False
    training: dict[str, Any] | None = None  # how the checkpoints were trained (origin.training)


def export_graph(model: torch.nn.Module, path: Path, inputs: list[TensorSpec],
                 outputs: list[TensorSpec]) -> None:
    """Export one module with a dynamic batch axis named `batch`, weights inside the file."""
    rng = np.random.default_rng(0)
    example = tuple(torch.from_numpy(random_input(s.name, (2, *s.shape[1:]), rng)) for s in inputs)
    batch = torch.export.Dim("batch", min=1, max=65536)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example, str(path),
            input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
            opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
            dynamic_shapes=tuple({0: batch} for _ in inputs),
        )


@torch.no_grad()
def parity(model: torch.nn.Module, session: Any, feeds: dict[str, np.ndarray]) -> tuple[float, float]:
    """(max |onnxruntime - PyTorch|, tolerance) for the same inputs."""
    expected = model(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    (actual,) = session.run(None, feeds)
    tolerance = PARITY_RTOL * max(1.0, float(np.abs(expected).max()))
    return float(np.abs(actual - expected).max()), tolerance


def build_models(request: ExportRequest, progress: Progress) -> dict[str, torch.nn.Module]:
    """Every torch role, with its checkpoint or (with a seed) fresh weights; LoRA merged."""
    unknown = sorted(set(request.checkpoints) - set(branches.TORCH_ROLES))
    if unknown:
        raise UserError(f"--checkpoint names unknown roles {unknown}",
                        hint=f"roles: {', '.join(branches.TORCH_ROLES)}")
    lacking = [r for r in branches.TORCH_ROLES if r not in request.checkpoints]
    if lacking and request.random_seed is None:
        raise UserError(f"no checkpoint for {lacking}",
                        hint="pass --checkpoint ROLE=FILE.pt for each, or --random for "
                             "fresh weights (benchmarks only)")
    if request.random_seed is not None:
        torch.manual_seed(request.random_seed)
    models = {}
    for role in branches.TORCH_ROLES:
        model = branches.build(role, request.profile, len(request.labels), request.features)
        if role in request.checkpoints:
            branches.load_checkpoint(model, request.checkpoints[role], role)
            progress(f"{role}: loaded {request.checkpoints[role]}")
        models[role] = branches.prepare_for_export(model)
    return models


def walk_pipeline(models: dict[str, torch.nn.Module], contract: Contract, samples: SampleSet,
                  init: Sequence[str] = (), batch: int = 8) -> dict[str, np.ndarray]:
    """Every role's input for `samples` (front-end outputs), computed in pipeline order.

    Roles in `init` get their data-dependent initialisation on the way, each on inputs
    made by the already initialised roles before it, as it will see them in the bundle.
    """
    tensors = {n: torch.from_numpy(a) for n, a in samples.arrays.items()}

    def run(role: str) -> torch.Tensor:
        (spec,) = contract[role]["inputs"]
        with torch.no_grad():
            return torch.cat([models[role](part) for part in torch.split(tensors[spec.name], batch)])

    for role in (EMBEDDER, *BRANCHES, META):
        if role == META:
            tensors["branch_probs"] = torch.cat([torch.sigmoid(run(r)) for r in BRANCHES], dim=1)
        if role in init:
            (spec,) = contract[role]["inputs"]
            branches.data_dependent_init(models[role], list(torch.split(tensors[spec.name], batch)))
        if role == EMBEDDER:
            tensors["embedding"] = run(EMBEDDER)
    return {name: tensor.numpy() for name, tensor in tensors.items()}


def export_bundle(request: ExportRequest, progress: Progress = print,
                  bar: bool = False) -> list[GraphReport]:
    """Write a complete fp32 bundle to request.out; returns one report per graph.

    With `bar`, a progress bar counts the graphs (pass tqdm.write as `progress`).
    """
    out = request.out.expanduser().absolute()
    if out.exists() and not request.force:
        raise UserError(f"{out} exists", hint="pass --force to replace it, or choose another folder")
    if request.frontend is not None and not request.frontend.is_file():
        raise UserError(f"{request.frontend}: no such front-end graph")
    contract = expected_io(request.features, len(request.labels))
    models = build_models(request, progress)
    fresh = [r for r in branches.TORCH_ROLES if r not in request.checkpoints]
    frontend = onnx_frontend(request.frontend) if request.frontend else None
    if fresh:
        samples = sample_set(request.calibration, request.calibration_samples, CALIBRATION_SEED,
                             request.features, frontend)
        progress(f"data-dependent initialisation of the fresh {', '.join(fresh)} "
                 f"on {samples.source}")
        walk_pipeline(models, contract, samples, init=fresh)
    # Parity inputs: fresh synthetic clips, so every graph sees inputs of its real
    # distribution (i.i.d. noise in a mel's range drives random networks to 1e4 logits,
    # where float32 rounding alone differs by more than any sensible bound).
    parity_inputs = walk_pipeline(
        models, contract, synthetic_set(PARITY_SAMPLES, PARITY_SEED, request.features, frontend))

    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        reports = _write_graphs(models, staging, contract, request.frontend, parity_inputs,
                                progress, bar)
        _write_manifest(staging, reports, request)
        load_bundle(staging)  # the finished bundle must pass the runtime's own checks
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return reports


def _write_graphs(models: dict[str, torch.nn.Module], root: Path, contract: Contract,
                  frontend: Path | None, parity_inputs: dict[str, np.ndarray],
                  progress: Progress, bar: bool) -> list[GraphReport]:
    import onnxruntime as ort

    def load(role: str, path: Path) -> Any:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        check_graph_io(path, contract[role]["inputs"], contract[role]["outputs"], session,
                       source="the bundle contract")
        return session

    reports = []
    if frontend is not None:
        started = time.perf_counter()
        path = root / "frontend.onnx"
        shutil.copyfile(frontend, path)
        session = load(FRONTEND, path)
        reports.append(GraphReport(FRONTEND, graph_entry(root, path.name, session),
                                   path.stat().st_size, None, None, time.perf_counter() - started))
    for role, model in tqdm(models.items(), desc="export", unit="graph", disable=not bar,
                            leave=False):
        started = time.perf_counter()
        path = root / f"{role}.onnx"
        export_graph(model, path, contract[role]["inputs"], contract[role]["outputs"])
        session = load(role, path)
        feeds = {spec.name: parity_inputs[spec.name] for spec in contract[role]["inputs"]}
        diff, tolerance = parity(model, session, feeds)
        report = GraphReport(role, graph_entry(root, path.name, session), path.stat().st_size,
                             diff, tolerance, time.perf_counter() - started)
        progress(f"{role}: {report.bytes / 1e6:.1f} MB, max |onnx - torch| = {diff:.2e} "
                 f"(bound {tolerance:.1e}), {report.seconds:.1f} s")
        if not diff <= tolerance:
            raise UserError(f"{role}: onnxruntime and PyTorch differ by {diff:.3e} "
                            f"(bound {tolerance:.1e})", hint="the export is wrong; report it")
        reports.append(report)
    return reports


def _write_manifest(root: Path, reports: list[GraphReport], request: ExportRequest) -> None:
    graphs = {report.role: report.entry for report in reports}
    digest = combined_sha256(graphs)
    labels = list(request.labels)
    weights = {role: (request.checkpoints[role].name if role in request.checkpoints
                      else f"random (seed {request.random_seed})") for role in branches.TORCH_ROLES}
    manifest = Manifest(
        version=request.version or f"fusion-{request.profile.name}-c{len(labels)}-{digest[:12]}",
        precision="fp32",
        num_classes=len(labels),
        labels=labels_entry(root, labels),
        features=request.features,
        graphs=graphs,
        thresholds=default_thresholds(labels, request.thresholds),
        origin={"profile": request.profile.name, "weights": weights,
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "torch": torch.__version__, "opset": OPSET,
                **({"training": request.training} if request.training else {})},
    )
    write_manifest(root, manifest)
