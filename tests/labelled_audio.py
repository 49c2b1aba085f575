"""A small labelled manifest for `models train`: synthetic chunks written as WAV files and
real recordings (the ones the project carries with their attribution: tests/data/real,
and opensoundscape's MIT clip inside the package), with groups. Used by the training
tests and the rollout test, which trains its candidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_AUDIO = ROOT / "tests" / "data" / "real"
WARBLERS = ROOT / "models" / "birdnet" / "check_audio" / "opensoundscape_birds_10s.wav"


def real_audio_present() -> bool:
    return (REAL_AUDIO / "birdclef_style_frog.ogg").is_file() and WARBLERS.is_file()


def write_manifest(root: Path) -> Path:
    """Synthetic 20 s files of two labelled chunks each (spans), four stations, and three
    real recordings in groups of their own, one of them cut into two spans."""
    import soundfile as sf

    from soundscape.synthetic import SAMPLE_RATE, soundscape_chunks

    chunks = list(soundscape_chunks(12, seed=7))
    rows = ["path,start,end,labels,group"]
    for f in range(6):
        part = chunks[2 * f:2 * f + 2]
        sf.write(root / f"syn{f}.wav", np.concatenate([c.audio for c in part]), SAMPLE_RATE)
        rows += [f"syn{f}.wav,{10 * i},{10 * i + 10},{';'.join(c.labels)},station{f % 4}"
                 for i, c in enumerate(part)]
    rows += [f"{WARBLERS},,,songbird,osd",
             f"{REAL_AUDIO}/birdclef_style_frog.ogg,0,30,frog,frogsite",
             f"{REAL_AUDIO}/birdclef_style_soundscape.ogg,0,40,flufftail,scape",
             f"{REAL_AUDIO}/birdclef_style_soundscape.ogg,40,60,,scape"]
    path = root / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def train_small(manifest: Path, out: Path, *extra: str) -> str:
    """`soundscape models train` at the smallest useful size; returns what it printed."""
    from click.testing import CliRunner

    from soundscape.app.cli import cli

    result = CliRunner().invoke(cli, ["models", "train", "--manifest", str(manifest), "--out",
                                      str(out), "--epochs", "1", "--patience", "1", "--seed", "3",
                                      "--labels", "manifest", *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output
