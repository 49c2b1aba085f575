"""The original runtime: BirdNET's TF-Lite models run by ai-edge-litert, for comparison."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"


def tflite_scores(model: Path, windows: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(logits [n, C], embeddings [n, 1024]) of the original classifier."""
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors "is for debugging"
        interpreter = Interpreter(model_path=str(model), experimental_preserve_all_tensors=True)
    (source,) = interpreter.get_input_details()
    (target,) = interpreter.get_output_details()
    pooled = next(t["index"] for t in interpreter.get_tensor_details()
                  if t["name"] == EMBEDDING_TENSOR)
    logits, embeddings = [], []
    for start in range(0, len(windows), batch):
        part = np.ascontiguousarray(windows[start:start + batch], dtype=np.float32)
        interpreter.resize_tensor_input(source["index"], list(part.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], part)
        interpreter.invoke()
        logits.append(interpreter.get_tensor(target["index"]).copy())
        embeddings.append(interpreter.get_tensor(pooled).reshape(len(part), -1).copy())
    return np.concatenate(logits), np.concatenate(embeddings)


def tflite_range(model: Path, sites: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    (source,) = interpreter.get_input_details()
    (target,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(source["index"], list(sites.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], sites.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(target["index"]).copy()
