"""`soundscape bench train`: what training costs on this machine, per epoch and per 1,000
clips, on a labelled manifest made on the spot (synthetic soundscapes written as WAV
files, several stations as groups), so anyone can rerun it without data of their own."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from soundscape.synthetic import SAMPLE_RATE, soundscape_chunks

#: Chunks per WAV file (consecutive spans of one recording) and stations (groups).
CHUNKS_PER_FILE = 5
STATIONS = 8


def write_synthetic_manifest(root: Path, chunks: int, seed: int = 11) -> Path:
    import soundfile as sf

    rows = ["path,start,end,labels,group"]
    made = list(soundscape_chunks(chunks, seed=seed))
    for index in range(0, chunks, CHUNKS_PER_FILE):
        part = made[index:index + CHUNKS_PER_FILE]
        name = f"rec{index // CHUNKS_PER_FILE:04d}.wav"
        sf.write(root / name, np.concatenate([c.audio for c in part]), SAMPLE_RATE)
        station = f"station{(index // CHUNKS_PER_FILE) % STATIONS}"
        rows += [f"{name},{10 * i},{10 * i + 10},{';'.join(c.labels)},{station}"
                 for i, c in enumerate(part)]
    path = root / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def bench_training(chunks: int, epochs: int, threads: int, progress: Any = print) -> dict[str, Any]:
    from soundscape.models.manifest_training import TrainOptions, train_manifest

    with tempfile.TemporaryDirectory(prefix="soundscape-train-bench-") as tmp:
        root = Path(tmp)
        made = time.perf_counter()
        manifest = write_synthetic_manifest(root, chunks)
        progress(f"{chunks} labelled synthetic chunks written in {time.perf_counter() - made:.0f} s")
        report = train_manifest(TrainOptions(manifest=manifest, out=root / "bundle", epochs=epochs,
                                             patience=epochs, threads=threads, device="cpu"),
                               progress=progress)
    return {"chunks": chunks, "train_clips": report.train_clips,
            "validation_clips": report.validation_clips, "epochs": epochs, "threads": threads,
            "seconds_per_epoch": round(report.seconds_per_epoch, 2),
            "seconds_per_1000_clips": round(report.seconds_per_1000_clips, 1),
            "validation_macro_f1": round(report.validation_macro_f1, 3),
            "seconds": {k: round(v, 1) for k, v in report.seconds.items()}}
