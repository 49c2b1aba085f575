"""Labelled synthetic chunks through the real broker into the ONNX front-end.

What a worker will do with each message (verify the envelope, decode the FLAC, run the
front-end on the batch) must give exactly the features of the audio the station sent,
and a chunk that decodes to nonsense must come back as a per-chunk error, not a crash.
"""

from __future__ import annotations

import time

import numpy as np
from confluent_kafka import Consumer

from soundscape.audio_codec import decode, encode, to_int16
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.envelope import ChunkEnvelope
from soundscape.kafka_clients import consumer_config
from soundscape.models.frontend.runtime import FrontEnd
from soundscape.settings import Settings
from soundscape.synthetic import SAMPLE_RATE, soundscape_chunks

_NS = 1_000_000_000


def test_features_of_chunks_read_from_kafka_match_what_was_sent(kafka_settings: Settings) -> None:
    chunks = list(soundscape_chunks(6, seed=77))
    publisher = ChunkPublisher(kafka_settings)
    start = (time.time_ns() // _NS - 3600) * _NS
    sent = {}
    for seq, chunk in enumerate(chunks):
        payload = encode(chunk.audio, SAMPLE_RATE, "flac")
        envelope = ChunkEnvelope.for_payload(
            payload, station_id="synth-01", chunk_start=start + seq * 10 * _NS,
            sample_rate=SAMPLE_RATE, seq=seq, captured_at=start + (seq + 1) * 10 * _NS,
            source="replay",
        )
        sent[str(publisher.publish(envelope, payload).chunk_id)] = chunk
    # One chunk a station could really send by mistake: 3 s instead of 10.
    short = encode(chunks[0].audio[: 3 * SAMPLE_RATE], SAMPLE_RATE, "flac")
    bad = ChunkEnvelope.for_payload(short, station_id="synth-01", chunk_start=start + 60 * _NS,
                                    sample_rate=SAMPLE_RATE, seq=6,
                                    captured_at=start + 70 * _NS)
    bad_id = str(publisher.publish(bad, short).chunk_id)
    publisher.flush()

    consumer = Consumer(consumer_config(kafka_settings, group_id=f"frontend-{time.time_ns()}"))
    consumer.subscribe([kafka_settings.topics.audio])
    received: dict[str, np.ndarray] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) + 1 and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=50, timeout=1.0):
                assert not msg.error(), msg.error()
                envelope = ChunkEnvelope.from_headers(msg.headers(), msg.value(), msg.key())
                received[str(envelope.chunk_id)] = decode(msg.value(), envelope.codec).mono()
    finally:
        consumer.close()
    assert set(received) == set(sent) | {bad_id}

    ids = sorted(received)
    frontend = FrontEnd(providers=["CPUExecutionProvider"])
    batch = frontend.features([received[i] for i in ids])
    assert batch.errors == {ids.index(bad_id): batch.errors[ids.index(bad_id)]}
    assert "96000 samples" in batch.errors[ids.index(bad_id)]

    # The station's audio, quantised to 16 bits as the FLAC carries it (libsndfile reads
    # PCM16 as n / 32768).
    good = [i for i in ids if i != bad_id]
    expected = frontend.run(np.stack([to_int16(sent[i].audio)[:, 0] / 32768.0 for i in good]))
    for row, chunk_id in enumerate(good):
        got = batch.index.index(ids.index(chunk_id))
        for name in ("waveform", "mel", "mel_aug"):
            np.testing.assert_allclose(getattr(batch, name)[got], expected[name][row],
                                       atol=1e-5 if name == "waveform" else 1e-3)
