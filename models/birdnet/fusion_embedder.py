"""BirdNET's embedding as a fusion bundle's embedder: real features for fusion bundles
trained on users' labels.

`embedding_graph` keeps only the classifier's `embedding` output (onnxruntime prunes the
dense layer that made the logits); `with_audio_embedder` writes a copy of a fusion bundle
whose embedder is that graph, reading 3 s windows at 48 kHz (the manifest's
`audio_embedder`), and whose `embed_classifier` is one trained on those embeddings.
Such a bundle carries BirdNET's weights, so it carries BirdNET's licence too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import (
    EMBEDDER,
    MANIFEST,
    Manifest,
    combined_sha256,
    load_bundle,
    write_manifest,
)
from soundscape.errors import UserError


def embedding_graph(classifier: Path) -> Any:
    """The windowed classifier's graph with only its `embedding` output."""
    import onnx

    model = onnx.load(str(classifier))
    kept = [o for o in model.graph.output if o.name == "embedding"]
    if not kept:
        raise UserError(f"{classifier}: no `embedding` output to embed with")
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def linear_head(weights: np.ndarray, bias: np.ndarray) -> Any:
    """An embed_classifier graph: logits = embedding @ weights + bias (float32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width, classes = weights.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["embedding", "weights", "bias"], ["logits"])],
        "embed_classifier",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights.astype(np.float32), "weights"),
         numpy_helper.from_array(bias.astype(np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def with_audio_embedder(fusion: Path, windowed: Path, out: Path, embed_classifier: Any,
                        version: str | None = None) -> Path:
    """Write `out`: `fusion` with the windowed bundle's embedding as its embedder."""
    import onnx
    import onnxruntime as ort

    from soundscape.bundle import graph_entry

    source = load_bundle(fusion)
    embedder = load_bundle(windowed)
    if source.kind != "fusion" or embedder.kind != "windowed" or embedder.manifest.window is None:
        raise UserError(f"need a fusion bundle and a windowed one, got {source.kind} and "
                        f"{embedder.kind}")
    if out.exists():
        raise UserError(f"{out} exists", hint="choose a new folder")
    window = embedder.manifest.window
    data = json.loads((Path(fusion) / MANIFEST).read_text())
    with tempfile.TemporaryDirectory(prefix=".embedder-", dir=out.parent) as tmp:
        work = Path(tmp)
        for entry in [source.manifest.labels, *source.manifest.graphs.values()]:
            shutil.copy2(source.root / entry.file, work / entry.file)
        onnx.save(embedding_graph(embedder.path("classifier")), str(work / "embedder.onnx"))
        onnx.save(embed_classifier, str(work / "embed_classifier.onnx"))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        for role in (EMBEDDER, "embed_classifier"):
            session = ort.InferenceSession(str(work / f"{role}.onnx"), options,
                                           providers=["CPUExecutionProvider"])
            data["graphs"][role] = graph_entry(work, f"{role}.onnx", session).model_dump()
        data["audio_embedder"] = window.model_dump()
        digest = combined_sha256(Manifest.model_validate(data).graphs)[:12]
        family = embedder.version.split("-")[0]  # "birdnet"
        data["version"] = version or f"{source.version.rsplit('-', 1)[0]}-{family}-embedder-{digest}"
        extra = embedder.manifest.model_extra or {}
        data["licence"] = extra.get("licence")
        data.setdefault("origin", {})["audio_embedder"] = {"bundle": embedder.version,
                                                           "source": extra.get("source")}
        write_manifest(work, Manifest.model_validate(data))
        load_bundle(work)
        work.rename(out)
    return out
