"""`soundscape bench transport`: what TLS and SCRAM cost a station's publishing.

The same pre-encoded chunks are published through the broker's loopback PLAINTEXT
listener and through the stations' SASL_SSL listener (as an enrolled station), in
alternating rounds in one run, so the ratio compares like with like on this machine.
Each round waits for every acknowledgement (acks=all, idempotent), as a station does.
"""

from __future__ import annotations

import time
import uuid
from statistics import median
from typing import Any


from soundscape.app.enrolment import add_station, as_principal, read_bundle
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope
from soundscape.infra.kafka.principals import revoke_station
from soundscape.kafka_topics import delete_topics, ensure_topics, scratch_topics
from soundscape.settings import Settings
from soundscape.synthetic.chunks import generated_chunks

_START_NS = 1_767_225_600 * 1_000_000_000


def bench_transport(settings: Settings, chunks: int = 200, rounds: int = 3) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    settings = scratch_topics(settings, run)
    station_id = f"bench-{run}"
    ensure_topics(settings)
    bundle = settings.state_dir / f"{station_id}.station.tar.gz"
    try:
        add_station(settings, station_id, bundle, signing=False)
        config, _ca = read_bundle(bundle)
        secure = as_principal(settings, station_id, config["kafka"]["sasl_password"])
        made = [(ChunkEnvelope.for_payload(
                    payload, station_id=station_id, chunk_start=env.chunk_start,
                    sample_rate=env.sample_rate, seq=env.seq, captured_at=env.captured_at,
                    source=env.source), payload)
                for env, payload in generated_chunks(chunks, 1, _START_NS)]
        megabytes = sum(len(p) for _, p in made) / 1e6
        times: dict[str, list[float]] = {"plaintext": [], "sasl_ssl": []}
        for _ in range(rounds):
            for name, target in (("plaintext", settings), ("sasl_ssl", secure)):
                times[name].append(_publish_all(target, made))
        plain, tls = median(times["plaintext"]), median(times["sasl_ssl"])
        return {
            "chunks": chunks, "rounds": rounds, "megabytes_per_round": round(megabytes, 1),
            "plaintext_chunks_per_s": round(chunks / plain, 1),
            "sasl_ssl_chunks_per_s": round(chunks / tls, 1),
            "plaintext_mb_per_s": round(megabytes / plain, 1),
            "sasl_ssl_mb_per_s": round(megabytes / tls, 1),
            "sasl_ssl_cost_percent": round((tls / plain - 1) * 100, 1),
            "seconds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        }
    finally:
        revoke_station(settings, station_id)
        bundle.unlink(missing_ok=True)
        delete_topics(settings, settings.topics.all_names())


def _publish_all(settings: Settings, chunks: list[tuple[Any, bytes]]) -> float:
    publisher = ChunkPublisher(settings)
    publisher.publish(*chunks[0])  # connect and authenticate outside the timed part
    publisher.flush()
    started = time.perf_counter()
    for envelope, payload in chunks[1:]:
        publisher.publish(envelope, payload)
    publisher.flush()
    elapsed = time.perf_counter() - started
    if publisher.stats.failed:
        raise RuntimeError(f"{publisher.stats.failed} chunks failed: {publisher.stats.errors[:3]}")
    return elapsed * len(chunks) / max(len(chunks) - 1, 1)
