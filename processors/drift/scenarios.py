"""Detection messages of stations whose input or predictions drift, from synthetic audio.

Stands in for the inference worker where tests and demos need results with known drift:
each message's audio statistics are computed (processors.audio_stats) from a labelled
synthetic soundscape (soundscape.synthetic), and its probabilities follow the chunk's
true species and their signal-to-noise ratios, as a fair classifier's would. Audio is
costly (~25 ms a chunk), so each condition renders a pool of chunks once per process and
streams draw from it with their own seeded generator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from soundscape.envelope import chunk_id_for
from soundscape.messages import AudioStats, Detection, LabelScore, StageTimes
from soundscape.audio_stats import audio_stats
from soundscape.processors.drift.summary import CHUNK_NS
from soundscape.synthetic import SAMPLE_RATE, SPECIES_NAMES, chunk_seed, soundscape_chunk

DETECTION_THRESHOLD = 0.5
BUNDLE_VERSION = "synthetic-demo-1"


@dataclass(frozen=True)
class Condition:
    """What a station hears: which species call, over which backgrounds, how loud."""

    species: tuple[str, ...]
    background_dbfs: tuple[float, float] = (-55.0, -45.0)
    snr_db: tuple[float, float] = (0.0, 20.0)
    backgrounds: tuple[str, ...] = ("pink-wind", "brown-rain", "distant-hum")


#: A station's usual soundscape: the first six species over moderate backgrounds.
NORMAL = Condition(species=SPECIES_NAMES[:6])
#: The same birds behind a background 20 dB louder (a new road): calls are as loud as
#: before, so their SNR drops by 20 dB too.
LOUDER = replace(NORMAL, background_dbfs=(-35.0, -25.0), snr_db=(-20.0, 0.0))
#: Another season: the other six species.
NEW_SPECIES = Condition(species=SPECIES_NAMES[6:])


@dataclass(frozen=True)
class PoolChunk:
    labels: tuple[str, ...]
    snr_db: tuple[float, ...]  # of each label, same order
    stats: AudioStats


@lru_cache(maxsize=16)
def pool(condition: Condition, size: int = 48, seed: int = 0) -> tuple[PoolChunk, ...]:
    """`size` rendered chunks of `condition` (cached: the same arguments, the same pool)."""
    rng = np.random.default_rng([seed, size])
    chunks = []
    for index in range(size):
        count = int(rng.integers(0, 4))
        species = [str(s) for s in rng.choice(condition.species, count, replace=False)]
        chunk = soundscape_chunk(
            chunk_seed(seed, index), species=species,
            background_kind=str(rng.choice(condition.backgrounds)),
            snr_db=condition.snr_db, background_dbfs=condition.background_dbfs,
        )
        snr = {event.species: event.snr_db for event in chunk.events}
        chunks.append(PoolChunk(chunk.labels, tuple(snr[label] for label in chunk.labels),
                                audio_stats(chunk.audio, SAMPLE_RATE)))
    return tuple(chunks)


def _probabilities(entry: PoolChunk, rng: random.Random) -> list[LabelScore]:
    """A fair classifier: present species scored by their SNR, the rest low. Returns
    the top five, and any further labels above the detection threshold."""
    scores = {label: rng.uniform(0.005, 0.15) for label in SPECIES_NAMES}
    for label, snr in zip(entry.labels, entry.snr_db, strict=True):
        confidence = 1 / (1 + math.exp(-(snr - 2.0) / 4.0)) * rng.uniform(0.85, 1.0)
        scores[label] = min(max(confidence, scores[label]), 0.99)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    kept = [kv for i, kv in enumerate(ranked) if i < 5 or kv[1] >= DETECTION_THRESHOLD]
    return [LabelScore(label=label, probability=round(p, 4)) for label, p in kept]


def detection(
    station_id: str, chunk_start: int, entry: PoolChunk, rng: random.Random,
    source: str = "replay", worker_id: str = "synthetic-worker",
) -> Detection:
    ranked = _probabilities(entry, rng)
    captured = chunk_start + CHUNK_NS + rng.randint(5, 60) * 1_000_000
    published = captured + rng.randint(10, 90) * 1_000_000
    consumed = published + int(rng.lognormvariate(4.5, 0.6) * 1_000_000)
    decode, features, inference = rng.uniform(2, 6), rng.uniform(5, 15), rng.uniform(20, 80)
    scored = consumed + int((decode + features + inference + rng.uniform(0, 120)) * 1_000_000)
    return Detection(
        chunk_id=chunk_id_for(station_id, chunk_start), station_id=station_id,
        chunk_start=chunk_start, sample_rate=SAMPLE_RATE, source=source,  # type: ignore[arg-type]
        bundle_version=BUNDLE_VERSION, top_k=ranked[:5],
        detections=[s for s in ranked if s.probability >= DETECTION_THRESHOLD],
        audio=entry.stats,
        timing=StageTimes(
            captured_at=captured, published_at=published, consumed_at=consumed,
            scored_at=scored, decode_ms=round(decode, 3), features_ms=round(features, 3),
            inference_ms=round(inference, 3),
        ),
        batch_size=rng.choice((8, 16, 32, 32, 32)), worker_id=worker_id,
    )


@dataclass(frozen=True)
class Segment:
    """`chunks` consecutive chunks of one condition; `missing` of them are never sent."""

    chunks: int
    condition: Condition | None  # None: the station is silent (nothing is sent)
    missing: float = 0.0


def station_stream(
    station_id: str, start_ns: int, segments: Iterable[Segment], seed: int = 0,
    source: str = "replay",
) -> Iterator[Detection]:
    """A station's abutting chunks from `start_ns`, segment after segment."""
    rng = random.Random(f"{station_id}/{seed}")
    index = 0
    for segment in segments:
        entries = pool(segment.condition) if segment.condition is not None else ()
        for _ in range(segment.chunks):
            chunk_start = start_ns + index * CHUNK_NS
            index += 1
            if not entries or rng.random() < segment.missing:
                continue
            yield detection(station_id, chunk_start, rng.choice(entries), rng, source)


def steady(minutes: int) -> list[Segment]:
    return [Segment(minutes * 6, NORMAL)]


def changed(minutes_before: int, minutes_after: int, after: Condition | None,
            missing: float = 0.0) -> list[Segment]:
    """Usual soundscape, then `after` (None: silence) from `minutes_before` on."""
    return [Segment(minutes_before * 6, NORMAL), Segment(minutes_after * 6, after, missing)]


def interleaved(streams: Iterable[Iterable[Detection]]) -> list[Detection]:
    """Several stations' messages in time order, as a shared topic would carry them."""
    return sorted((m for stream in streams for m in stream),
                  key=lambda m: (m.chunk_start, m.station_id))
