"""The synthetic soundscape generator: labelled, parametric, seeded, reproducible."""

from __future__ import annotations

import csv
import inspect
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscape.synthetic import (
    BACKGROUNDS,
    SPECIES,
    SPECIES_NAMES,
    background,
    chunk_seed,
    field_chunk,
    multi_hot,
    soundscape_chunk,
    soundscape_chunks,
    write_archive,
    write_chunks,
)

SR = 32_000


def test_field_chunk_keeps_its_signature_and_determinism() -> None:
    params = list(inspect.signature(field_chunk).parameters)
    assert params == ["seed", "sample_rate", "seconds", "noise_dbfs", "calls"]
    a, b = field_chunk(5), field_chunk(5)
    assert a.dtype == np.float32 and a.shape == (320_000,) and np.array_equal(a, b)


def test_a_dozen_distinct_species_of_the_four_kinds() -> None:
    assert len(SPECIES) == 12 and len(set(SPECIES_NAMES)) == 12
    assert {"whistle", "trill", "stack", "buzz"} <= {s.kind for s in SPECIES}
    assert BACKGROUNDS == ("pink-wind", "brown-rain", "distant-hum", "silence")


@pytest.mark.parametrize("species", SPECIES, ids=SPECIES_NAMES)
def test_each_species_sings_in_its_own_band(species) -> None:
    rng = np.random.default_rng(11)
    bout = species.bout(rng, SR, max_s=9.0)
    power = np.abs(np.fft.rfft(bout)) ** 2
    freqs = np.fft.rfftfreq(bout.size, 1 / SR)
    lo, hi = species.band_hz
    assert power[(freqs >= lo) & (freqs <= hi)].sum() / power.sum() > 0.95
    voiced = bout[np.abs(bout) > 1e-6]
    assert np.sqrt(np.mean(voiced**2)) == pytest.approx(1.0, rel=1e-3)
    assert bout.size <= 9.0 * SR


def test_same_seed_same_samples_and_labels_other_seed_differs() -> None:
    a, b, c = soundscape_chunk(42), soundscape_chunk(42), soundscape_chunk(43)
    assert np.array_equal(a.audio, b.audio) and a.labels == b.labels and a.events == b.events
    assert not np.array_equal(a.audio, c.audio)


def test_chunks_hold_zero_to_three_species_over_every_background() -> None:
    chunks = list(soundscape_chunks(200, seed=3))
    counts = Counter(len(c.labels) for c in chunks)
    assert set(counts) == {0, 1, 2, 3}
    assert {c.background for c in chunks} == set(BACKGROUNDS)
    assert set().union(*(c.labels for c in chunks)) == set(SPECIES_NAMES)
    for c in chunks:
        assert c.audio.dtype == np.float32 and c.audio.shape == (320_000,)
        assert np.all(np.isfinite(c.audio)) and np.max(np.abs(c.audio)) <= 0.99 + 1e-6
        assert [e.species for e in sorted(c.events, key=lambda e: SPECIES_NAMES.index(e.species))] \
            == list(c.labels)
        for e in c.events:
            assert 0 <= e.start_s < e.end_s <= 10.0 and 0 <= e.snr_db <= 20


def test_calls_are_where_the_events_say() -> None:
    chunk = soundscape_chunk(7, species=("cicada",), background_kind="silence")
    (event,) = chunk.events
    inside = chunk.audio[int(event.start_s * SR) : int(event.end_s * SR)]
    outside = np.concatenate([chunk.audio[: int(event.start_s * SR)],
                              chunk.audio[int(event.end_s * SR) :]])
    assert np.std(inside) > 100 * np.std(outside)  # the -90 dBFS floor


def test_forced_choice_and_unknown_names() -> None:
    chunk = soundscape_chunk(1, species=("low-hoot", "warbler"), background_kind="distant-hum")
    assert chunk.labels == ("warbler", "low-hoot") and chunk.background == "distant-hum"
    assert multi_hot(chunk.labels).tolist() == [float(n in chunk.labels) for n in SPECIES_NAMES]
    with pytest.raises(ValueError, match="unknown species"):
        soundscape_chunk(1, species=("dodo",))
    with pytest.raises(ValueError, match="unknown background"):
        background("sleet", np.random.default_rng(0), 100)


@pytest.mark.parametrize("kind", BACKGROUNDS)
def test_backgrounds_are_finite_and_scaled(kind: str) -> None:
    noise = background(kind, np.random.default_rng(0), SR * 2)
    assert np.all(np.isfinite(noise))
    expected = 10 ** (-90 / 20) if kind == "silence" else 1.0
    assert np.std(noise) == pytest.approx(expected, rel=0.05)


def test_background_spectra_differ_as_named() -> None:
    rng = np.random.default_rng(0)

    def low_share(kind: str) -> float:
        power = np.abs(np.fft.rfft(background(kind, rng, SR * 4))) ** 2
        freqs = np.fft.rfftfreq(SR * 4, 1 / SR)
        return power[freqs < 500].sum() / power.sum()

    assert low_share("brown-rain") > low_share("pink-wind") > low_share("silence")
    hum = np.abs(np.fft.rfft(background("distant-hum", rng, SR * 4))) ** 2
    freqs = np.fft.rfftfreq(SR * 4, 1 / SR)
    mains = hum[(np.abs(freqs - 50) < 1) | (np.abs(freqs - 60) < 1)].sum()
    assert mains / hum.sum() > 0.3


def test_chunk_seeds_are_stable_and_distinct() -> None:
    seeds = [chunk_seed(0, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and seeds == [chunk_seed(0, i) for i in range(1000)]
    assert chunk_seed(1, 0) != chunk_seed(0, 0)
    first = next(soundscape_chunks(1, seed=9, start=5))
    assert first.seed == chunk_seed(9, 5)


def test_write_chunks_files_and_labels(tmp_path: Path) -> None:
    labels = write_chunks(tmp_path, 3, seed=2, codec="wav")
    rows = list(csv.DictReader(labels.open()))
    assert [r["file"] for r in rows] == [f"chunk-00000{i}.wav" for i in range(3)]
    for row, chunk in zip(rows, soundscape_chunks(3, seed=2), strict=True):
        audio, rate = sf.read(tmp_path / row["file"], dtype="float32")
        assert rate == SR and audio.shape == (320_000,)
        assert np.max(np.abs(audio - chunk.audio)) <= 1 / 32767
        assert row["labels"] == ";".join(chunk.labels)
    with pytest.raises(FileExistsError):
        write_chunks(tmp_path, 1)


def test_archive_is_audiomoth_named_and_labelled_per_chunk(tmp_path: Path) -> None:
    folder = tmp_path / "marsh-01"
    start = datetime(2025, 6, 1, 4, 0, 0, tzinfo=timezone.utc)
    paths = write_archive(folder, start, seconds=70, file_seconds=30, seed=5, codec="flac")
    assert [p.name for p in paths] == [
        "20250601_040000.FLAC", "20250601_040030.FLAC", "20250601_040100.FLAC"]
    frames = [sf.info(p).frames for p in paths]
    assert frames == [30 * SR, 30 * SR, 10 * SR]
    with sf.SoundFile(paths[1]) as handle:
        assert handle.copy_metadata()["comment"].startswith("Recorded at 04:00:30 01/06/2025 (UTC)")
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    assert len(rows) == 7
    assert rows[4]["file"] == "20250601_040030.FLAC" and rows[4]["offset_s"] == "10"
    assert rows[4]["chunk_start_utc"] == "2025-06-01T04:00:40Z"
    # The archive's 5th chunk is the data set's 5th chunk, samples and labels.
    chunk = soundscape_chunk(chunk_seed(5, 4))
    audio, _ = sf.read(paths[1], dtype="float32", start=10 * SR, frames=10 * SR)
    assert np.max(np.abs(audio - chunk.audio)) <= 1 / 32767
    assert rows[4]["labels"] == ";".join(chunk.labels)


def test_archive_refuses_to_overwrite_or_split_chunks(tmp_path: Path) -> None:
    start = datetime(2025, 6, 1, 4, 0, 0)
    write_archive(tmp_path, start, seconds=10, file_seconds=10)
    with pytest.raises(FileExistsError):
        write_archive(tmp_path, start, seconds=10, file_seconds=10)
    with pytest.raises(ValueError, match="multiple of 10"):
        write_archive(tmp_path / "x", start, seconds=15)
    with pytest.raises(ValueError, match="whole second"):
        write_archive(tmp_path / "y", start.replace(microsecond=5), seconds=10)
