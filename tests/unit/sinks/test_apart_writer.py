"""The writer of results kept apart: what each kind stores, and which edge results it
refuses before anything reaches the database."""

from __future__ import annotations

from typing import Any

from soundscape.chunk_signing import ChunkSigner, SignerKey, new_private_key_text, result_headers
from soundscape.envelope import chunk_id_for
from soundscape.messages import AudioStats, Detection, LabelScore, StageTimes
from soundscape.settings import Settings
from soundscape.sinks.shadow_writer import EDGE, SHADOW, EdgeWriter, ShadowWriter

T0 = 1_714_541_400 * 10**9


class _Msg:
    def __init__(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._value, self._headers = value, headers

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


class _Keys:
    def __init__(self, keys: dict[str, SignerKey]) -> None:
        self.lookup = keys.get


def _detection(station: str, worker_id: str) -> Detection:
    return Detection(
        chunk_id=chunk_id_for(station, T0), station_id=station, chunk_start=T0,
        sample_rate=32_000, source="live", bundle_version="v-int8",
        top_k=[LabelScore(label="wren", probability=0.9)],
        audio=AudioStats(rms_dbfs=-30, noise_floor_dbfs=-50, peak_dbfs=-3, clipping_ratio=0,
                         silence_ratio=0, spectral_centroid_hz=2000, dc_offset=0),
        timing=StageTimes(captured_at=T0, published_at=T0, consumed_at=T0, scored_at=T0,
                          decode_ms=0, features_ms=1, inference_ms=1),
        batch_size=1, worker_id=worker_id)


def test_each_kind_names_its_table_topic_group_and_columns() -> None:
    settings = Settings()
    shadow, edge = ShadowWriter(settings), EdgeWriter(settings)
    assert (shadow.name, shadow.group_id) == ("shadow-sink", "soundscape-sink-shadow")
    assert (edge.name, edge.group_id) == ("edge-sink", "soundscape-sink-edge")
    assert SHADOW.insert().startswith("INSERT INTO shadow_results (chunk_id, bundle_version")
    assert EDGE.insert().count("%s") == len(EDGE.columns) == len(SHADOW.columns) + 2
    assert EDGE.columns[-2:] == ("signer", "captured_at")
    assert "ON CONFLICT (chunk_id, bundle_version) DO NOTHING" in EDGE.insert()
    assert getattr(settings.topics, EDGE.topic_field) == "soundscape.detections.edge.v1"


def test_edge_results_must_be_the_stations_own_and_signed_as_chunks_are() -> None:
    signer = ChunkSigner.from_text(new_private_key_text(), "pi-1")
    own = _detection("pi-1", "edge:pi-1")
    value = own.to_bytes()
    writer = EdgeWriter(Settings())
    writer._keys = _Keys({"pi-1": SignerKey("pi-1", signer.key.public_key())})  # type: ignore[assignment]

    def refusal(detection: Detection, value: bytes, headers: list[Any]) -> str | None:
        found = writer._edge_refusal(_Msg(value, headers), detection)  # type: ignore[arg-type]
        return None if found is None else found[0]

    assert refusal(own, value, result_headers(signer, value)) is None
    assert refusal(own, value, []) == "unsigned"
    worker = _detection("pi-1", "worker-3")
    assert refusal(worker, worker.to_bytes(), result_headers(signer, worker.to_bytes())) == "wrong_origin"
    other = _detection("pi-2", "edge:pi-2")
    assert refusal(other, other.to_bytes(), result_headers(signer, other.to_bytes())) == "wrong_signer"
    writer._keys = None  # intake.signatures off: only the origin is checked
    assert refusal(own, value, []) is None
