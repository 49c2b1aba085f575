"""The steps that need TensorFlow (tf2onnx's conversion) and the TF-Lite runtime, run in a
child process: TensorFlow and PyTorch in one process abort it (their native libraries
clash), and a worker or test process may hold PyTorch. The parent sends the windows to
score and reads back the ONNX graphs and the original runtime's outputs.

    python -m soundscape.models.birdnet.isolated CLASSIFIER.tflite RANGE.tflite WORKDIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

WINDOWS = "windows.npy"
REFERENCE = "reference.npz"
SITES = "sites.npy"


def main(argv: list[str]) -> int:
    from soundscape.models.birdnet import convert, reference

    classifier, range_model, work = Path(argv[0]), Path(argv[1]), Path(argv[2])
    convert.save(convert.classifier_graph(classifier), work / "classifier.onnx")
    convert.save(convert.range_graph(range_model), work / "range.onnx")
    windows = np.load(work / WINDOWS)
    logits, embeddings = reference.tflite_scores(classifier, windows)
    sites = np.load(work / SITES)
    np.savez(work / REFERENCE, logits=logits, embeddings=embeddings,
             range_scores=reference.tflite_range(range_model, sites))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
