"""The model bundle: a folder of ONNX graphs, a labels file and a manifest (`bundle.json`).

This module reads and checks a bundle without running it (numpy and the standard library
only): the manifest's fields, every file's sha256, the labels' count, and that the graphs
wire together as the contract says (docs/architecture.md, "The model bundle"). A bundle
that fails any check is refused with one `BundleError` naming the file and the mismatch,
so a worker never scores with a model that is not the one its manifest describes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from soundscape.errors import UserError

MANIFEST = "bundle.json"
MANIFEST_FORMAT = 1
EMBEDDING_DIM = 2048

#: Graph roles in pipeline order; the four branches feed the meta model in BRANCHES order.
FRONTEND = "frontend"
EMBEDDER = "embedder"
BRANCHES = ("embed_classifier", "resnet50", "effnet_b3_lora", "wave_cnn")
META = "meta"
ROLES = (FRONTEND, EMBEDDER, *BRANCHES, META)
REQUIRED_ROLES = ROLES[1:]  # a bundle fed branch inputs may leave out the front-end

#: Roles of a windowed bundle (kind "windowed": one classifier over fixed windows at its
#: own sample rate, e.g. BirdNET v2.4): the classifier, and optionally a species-range
#: model (latitude, longitude, week -> how likely each label is there and then).
CLASSIFIER = "classifier"
RANGE = "range"
WINDOWED_ROLES = (CLASSIFIER, RANGE)

Kind = Literal["fusion", "windowed"]

Precision = Literal["fp32", "fp16", "int8"]
Dim = int | str


class BundleError(UserError):
    """A bundle that is not what its manifest says; the message names the file at fault."""


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[Dim]
    dtype: str = "float32"

    def describe(self) -> str:
        return f"{self.name} {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


class GraphEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class LabelsEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = "labels.txt"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BundleFeatures(BaseModel):
    """What a bundle's manifest records of the front-end (its shapes and band limits); the
    branch input shapes follow from it. The front-end's full recipe is
    `soundscape.frontend_params.FeatureParams`, whose MANIFEST_KEYS are these fields."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(32_000, gt=0)
    samples: int = Field(320_000, gt=0)
    n_fft: int = Field(2048, gt=0)
    hop_length: int = Field(1024, gt=0)
    n_mels: int = Field(64, gt=0)
    frames: int = Field(313, gt=0)
    fmin: float = Field(50.0, ge=0)
    fmax: float = Field(14_000.0, gt=0)
    top_db: float = Field(80.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> BundleFeatures:
        if self.frames != 1 + self.samples // self.hop_length:
            raise ValueError(
                f"frames {self.frames} != 1 + samples // hop_length "
                f"({1 + self.samples // self.hop_length}, centred STFT)"
            )
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need fmin < fmax <= sample_rate / 2, got {self.fmin}, {self.fmax}")
        return self


class WindowParams(BaseModel):
    """How a windowed classifier sees a chunk: windows of `samples` at `sample_rate`,
    starting every `hop_samples`; scores pool over windows per label (max)."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(gt=0)
    samples: int = Field(gt=0, description="samples per window")
    hop_samples: int = Field(gt=0, description="default hop; samples - hop is the overlap")
    pooling: Literal["max"] = "max"
    embedding_dim: int = Field(gt=0)
    min_source_rate: int = Field(
        16_000, gt=0, description="chunks recorded below this rate are refused, not upsampled")
    label_format: Literal["plain", "scientific_common"] = "plain"
    location_threshold: float = Field(0.03, ge=0, le=1,
                                      description="range-model score a species needs to be in range")
    sensitivity: float = Field(1.0, ge=0.5, le=1.5,
                               description="default slope of the logit -> probability sigmoid")
    default_threshold: float = Field(0.25, ge=0, le=1,
                                     description="detection threshold of labels `thresholds` omits")

    @model_validator(mode="after")
    def _hop(self) -> WindowParams:
        if self.hop_samples > self.samples:
            raise ValueError(f"hop_samples {self.hop_samples} > samples {self.samples}: "
                             "windows would skip audio")
        return self


class Agreement(BaseModel):
    """How often a reduced-precision variant picks the same top-1 label as its fp32 source."""

    top1: float = Field(ge=0, le=1)
    samples: int = Field(gt=0)
    top1_in_top5: float | None = Field(None, ge=0, le=1,
                                       description="fp32's top label among the variant's top 5")
    mean_abs_diff: float | None = Field(None, ge=0, description="of the probabilities")
    held_out: str = Field(description="what the held-out inputs were")
    fp32_version: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")  # newer tools may add fields; old ones ignore them

    format: int = MANIFEST_FORMAT
    kind: Kind = "fusion"
    version: str = Field(min_length=1, max_length=128)
    precision: Precision
    num_classes: int = Field(gt=0)
    labels: LabelsEntry
    features: BundleFeatures = BundleFeatures()
    window: WindowParams | None = None
    #: Fusion bundles only: the embedder reads audio in windows at its own rate (such as
    #: BirdNET's 1024-d embedding, mean-pooled over a chunk's windows) instead of the mel.
    audio_embedder: WindowParams | None = None
    graphs: dict[str, GraphEntry]
    thresholds: dict[str, float] = Field(default_factory=dict)
    agreement_with_fp32: Agreement | None = None

    @model_validator(mode="after")
    def _known(self) -> Manifest:
        if self.format != MANIFEST_FORMAT:
            raise ValueError(f"manifest format {self.format}; this version reads {MANIFEST_FORMAT}")
        roles, required = ((WINDOWED_ROLES, (CLASSIFIER,)) if self.kind == "windowed"
                           else (ROLES, REQUIRED_ROLES))
        if (self.kind == "windowed") != (self.window is not None):
            raise ValueError("a windowed bundle needs `window`, and only a windowed one has it")
        if self.kind == "windowed" and self.audio_embedder is not None:
            raise ValueError("`audio_embedder` belongs to fusion bundles")
        unknown = sorted(set(self.graphs) - set(roles))
        if unknown:
            raise ValueError(f"unknown graph roles {unknown} for a {self.kind} bundle; "
                             f"known: {list(roles)}")
        missing = [role for role in required if role not in self.graphs]
        if missing:
            raise ValueError(f"graphs lack the roles {missing}")
        bad = {k: v for k, v in self.thresholds.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1]: {bad}")
        return self


def _spec(name: str, *dims: int) -> TensorSpec:
    return TensorSpec(name=name, shape=["batch", *dims])


def expected_windowed_io(window: WindowParams,
                         num_classes: int) -> dict[str, dict[str, list[TensorSpec]]]:
    """The windowed contract: the classifier maps a window of audio to logits and its
    embedding; the range model maps (latitude, longitude, week) to per-label scores."""
    return {
        CLASSIFIER: {"inputs": [_spec("audio", window.samples)],
                     "outputs": [_spec("logits", num_classes),
                                 _spec("embedding", window.embedding_dim)]},
        RANGE: {"inputs": [_spec("site", 3)], "outputs": [_spec("scores", num_classes)]},
    }


def manifest_io(manifest: Manifest) -> dict[str, dict[str, list[TensorSpec]]]:
    if manifest.kind == "windowed":
        assert manifest.window is not None
        return expected_windowed_io(manifest.window, manifest.num_classes)
    return expected_io(manifest.features, manifest.num_classes, manifest.audio_embedder)


def expected_io(features: BundleFeatures, num_classes: int,
                audio_embedder: WindowParams | None = None) -> dict[str, dict[str, list[TensorSpec]]]:
    """The contract: every role's input and output tensors for these features and classes
    (with an audio embedder, the embedder reads windows of audio at its own rate)."""
    spec = _spec

    mel = (1, features.n_mels, features.frames)
    logits = [spec("logits", num_classes)]
    width = EMBEDDING_DIM if audio_embedder is None else audio_embedder.embedding_dim
    return {
        FRONTEND: {
            "inputs": [spec("pcm", features.samples)],
            "outputs": [spec("waveform", features.samples), spec("mel", *mel),
                        spec("mel_aug", *mel)],
        },
        EMBEDDER: ({"inputs": [spec("mel", *mel)], "outputs": [spec("embedding", EMBEDDING_DIM)]}
                   if audio_embedder is None else
                   {"inputs": [spec("audio", audio_embedder.samples)],
                    "outputs": [spec("embedding", audio_embedder.embedding_dim)]}),
        "embed_classifier": {"inputs": [spec("embedding", width)], "outputs": logits},
        "resnet50": {"inputs": [spec("mel_aug", *mel)], "outputs": logits},
        "effnet_b3_lora": {"inputs": [spec("mel", *mel)], "outputs": logits},
        "wave_cnn": {"inputs": [spec("waveform", features.samples)], "outputs": logits},
        META: {"inputs": [spec("branch_probs", len(BRANCHES) * num_classes)], "outputs": logits},
    }


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder, manifest and labels."""

    root: Path
    manifest: Manifest
    labels: tuple[str, ...]

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def kind(self) -> Kind:
        return self.manifest.kind

    @property
    def sample_rate(self) -> int:
        """The rate the model reads audio at: chunks are resampled to it before scoring."""
        window = self.manifest.window
        return window.sample_rate if window is not None else self.manifest.features.sample_rate

    @property
    def has_frontend(self) -> bool:
        return FRONTEND in self.manifest.graphs

    def path(self, role: str) -> Path:
        return self.root / self.manifest.graphs[role].file

    def thresholds(self, default: float | None = None) -> np.ndarray:
        """Per-label thresholds in label order; labels the manifest does not name get
        `default`, else the windowed bundle's default, else 0.5."""
        if default is None:
            window = self.manifest.window
            default = window.default_threshold if window is not None else 0.5
        table = self.manifest.thresholds
        return np.array([table.get(label, default) for label in self.labels], dtype=np.float32)

    def sizes(self) -> dict[str, int]:
        """Bytes on disk per graph role."""
        return {role: self.path(role).stat().st_size for role in self.manifest.graphs}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(root: Path) -> Manifest:
    """Parse and validate `bundle.json`; one BundleError naming the field on failure."""
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise BundleError(f"{root}: no such bundle folder", hint="pass the folder holding bundle.json")
    if not path.is_file():
        raise BundleError(f"{path}: missing", hint="a bundle folder holds bundle.json; "
                          "make one with `soundscape models export`")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
            for err in exc.errors()
        )
        raise BundleError(f"{path}: {problems}") from None


def load_bundle(root: Path | str, *, verify_hashes: bool = True) -> Bundle:
    """Read a bundle and check it against its manifest and the contract, or refuse it."""
    root = Path(root).expanduser().absolute()
    manifest = read_manifest(root)
    _check_file(root, manifest.labels.file, manifest.labels.sha256, verify_hashes)
    labels_path = root / manifest.labels.file
    try:
        labels = tuple(line.strip() for line in labels_path.read_text().splitlines() if line.strip())
    except UnicodeDecodeError:
        raise BundleError(f"{labels_path}: not UTF-8 text") from None
    if len(labels) != manifest.num_classes:
        raise BundleError(
            f"{labels_path}: {len(labels)} labels, but the manifest says num_classes "
            f"{manifest.num_classes}",
            hint="one label per line, as many as the model's output width",
        )
    if len(set(labels)) != len(labels):
        raise BundleError(f"{labels_path}: labels repeat")
    unknown = sorted(set(manifest.thresholds) - set(labels))
    if unknown:
        raise BundleError(f"{root / MANIFEST}: thresholds name unknown labels {unknown[:5]}")
    contract = manifest_io(manifest)
    for role, entry in manifest.graphs.items():
        _check_file(root, entry.file, entry.sha256, verify_hashes)
        for kind in ("inputs", "outputs"):
            _compare(root / entry.file, kind, contract[role][kind], getattr(entry, kind),
                     source="the contract", target="the manifest")
    return Bundle(root=root, manifest=manifest, labels=labels)


def check_graph_io(
    path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], session: Any,
    *, source: str = "the manifest",
) -> None:
    """Compare a loaded onnxruntime session's inputs and outputs with the expected specs."""
    _compare(path, "inputs", inputs, [node_arg_spec(a) for a in session.get_inputs()],
             source=source, target="the graph")
    _compare(path, "outputs", outputs, [node_arg_spec(a) for a in session.get_outputs()],
             source=source, target="the graph")


def combined_sha256(graphs: Mapping[str, GraphEntry]) -> str:
    """One digest over every graph's hash: the default version string derives from it."""
    lines = "".join(f"{role}:{graphs[role].sha256}\n" for role in sorted(graphs))
    return hashlib.sha256(lines.encode()).hexdigest()


_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int64)": "int64"}


def node_arg_spec(arg: Any) -> TensorSpec:
    """An onnxruntime NodeArg (name, shape, type) as a TensorSpec; unnamed dims become '?'."""
    shape = [d if isinstance(d, int | str) else "?" for d in arg.shape]
    return TensorSpec(name=arg.name, shape=shape, dtype=_ORT_DTYPES.get(arg.type, arg.type))


def _compare(
    path: Path, kind: str, want: Iterable[TensorSpec], got: Iterable[TensorSpec],
    *, source: str, target: str,
) -> None:
    want_map = {s.name: s for s in want}
    got_map = {s.name: s for s in got}
    if set(want_map) != set(got_map):
        raise BundleError(
            f"{path}: {kind} are {sorted(got_map)} in {target}, {sorted(want_map)} in {source}"
        )
    for name, spec in want_map.items():
        other = got_map[name]
        if spec.shape != other.shape or spec.dtype != other.dtype:
            raise BundleError(
                f"{path}: {kind[:-1]} {other.describe()} in {target}, "
                f"but {spec.describe()} in {source}",
                hint="re-export the graph or fix the manifest; the batch axis must be named 'batch'",
            )


def _check_file(root: Path, name: str, sha256: str, verify_hash: bool) -> None:
    path = root / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{root / MANIFEST}: file {name!r} lies outside the bundle folder")
    if not path.is_file():
        raise BundleError(f"{path}: missing (listed in {MANIFEST})")
    if verify_hash:
        actual = sha256_file(path)
        if actual != sha256:
            raise BundleError(
                f"{path}: sha256 {actual[:16]}... but the manifest says {sha256[:16]}...",
                hint="the file was changed or truncated; copy the bundle again",
            )


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write bundle.json (sorted, indented: diffs between versions stay readable)."""
    path = Path(root) / MANIFEST
    data = manifest.model_dump(mode="json", exclude_none=True)
    if manifest.kind == "windowed":
        data.pop("features", None)  # the front-end's parameters; a windowed bundle has none
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def graph_entry(root: Path, file: str, session: Any) -> GraphEntry:
    """A manifest entry for a graph file, from its loaded onnxruntime session."""
    return GraphEntry(
        file=file,
        sha256=sha256_file(Path(root) / file),
        inputs=[node_arg_spec(a) for a in session.get_inputs()],
        outputs=[node_arg_spec(a) for a in session.get_outputs()],
    )


def labels_entry(root: Path, labels: Sequence[str], file: str = "labels.txt") -> LabelsEntry:
    """Write the labels file (one per line) and return its manifest entry."""
    path = Path(root) / file
    path.write_text("".join(f"{label}\n" for label in labels))
    return LabelsEntry(file=file, sha256=sha256_file(path))


def default_thresholds(labels: Sequence[str], overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    return {label: float((overrides or {}).get(label, 0.5)) for label in labels}
