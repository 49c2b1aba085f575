"""The synthetic stations drift as they claim: measured from rendered audio."""

from __future__ import annotations

from statistics import median

from soundscape.envelope import chunk_id_for
from soundscape.processors.drift import scenarios as sc
from soundscape.processors.drift.bench import checks_alone, messages
from soundscape.processors.drift.summary import CHUNK_NS
from soundscape.settings import Settings

T0 = 1_780_286_400 * 10**9


def test_louder_background_raises_the_measured_noise_floor_by_about_20_db() -> None:
    normal = median(c.stats.noise_floor_dbfs for c in sc.pool(sc.NORMAL))
    louder = median(c.stats.noise_floor_dbfs for c in sc.pool(sc.LOUDER))
    assert 16 < louder - normal < 24


def test_new_species_are_other_species() -> None:
    before = {label for c in sc.pool(sc.NORMAL) for label in c.labels}
    after = {label for c in sc.pool(sc.NEW_SPECIES) for label in c.labels}
    assert before and after and not before & after


def test_streams_abut_skip_missing_chunks_and_derive_ids() -> None:
    stream = list(sc.station_stream("st", T0, sc.changed(10, 10, None)))
    assert len(stream) == 60 and stream[-1].chunk_start == T0 + 59 * CHUNK_NS
    assert all(m.chunk_id == chunk_id_for("st", m.chunk_start) for m in stream)
    assert all(m.top_k == sorted(m.top_k, key=lambda s: -s.probability) for m in stream)
    gappy = list(sc.station_stream("st", T0, [sc.Segment(600, sc.NORMAL, missing=0.3)]))
    assert 350 < len(gappy) < 490
    again = list(sc.station_stream("st", T0, sc.changed(10, 10, None)))
    assert again == stream  # seeded


def test_bench_checks_alone_counts_every_chunk() -> None:
    batch = messages(1200, 3, T0)
    assert len(batch) == 1200 and [m.chunk_start for m in batch] == sorted(
        m.chunk_start for m in batch)
    figures = checks_alone(Settings(), batch)
    assert figures["chunks_per_s"] > 0 and figures["reports"] > 0
