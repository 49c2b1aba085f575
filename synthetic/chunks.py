"""Generated chunk messages (envelope and FLAC payload) for the transport tests and
benchmarks: field-like audio, abutting, round-robin over demo stations."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from soundscape.audio_codec import encode
from soundscape.envelope import CHUNK_SECONDS, ChunkEnvelope
from soundscape.synthetic import SAMPLE_RATE, field_chunk

_NS = 1_000_000_000


def generated_chunks(
    count: int, stations: int, start_ns: int, threads: int = 2
) -> Iterator[tuple[ChunkEnvelope, bytes]]:
    """Abutting 10 s chunks, round-robin over `stations`, encoded to FLAC in threads."""

    def make(index: int) -> tuple[ChunkEnvelope, bytes]:
        station = f"demo-{index % stations:03d}"
        seq = index // stations
        chunk_start = start_ns + seq * CHUNK_SECONDS * _NS
        payload = encode(field_chunk(seed=index), SAMPLE_RATE, "flac")
        envelope = ChunkEnvelope.for_payload(
            payload,
            station_id=station,
            chunk_start=chunk_start,
            sample_rate=SAMPLE_RATE,
            seq=seq,
            captured_at=chunk_start + CHUNK_SECONDS * _NS,
            source="replay",
        )
        return envelope, payload

    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield from pool.map(make, range(count))
