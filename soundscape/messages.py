"""JSON values of the result topics: detections, station heartbeats, drift reports.

Workers and stations write them, the sink and the drift checks read them; one definition
here keeps both sides honest. Times are ns since 1970 UTC (int), like the envelope.
Every message carries `schema_version`; readers refuse versions they do not know.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from soundscape.envelope import STATION_ID_RE

SCHEMA_VERSION = 1

StationId = Annotated[str, Field(pattern=f"^{STATION_ID_RE.pattern}$", max_length=64)]
Nanos = Annotated[int, Field(ge=0, le=2**63 - 1)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: A duration in ms: finite, and at most a day (the REAL column would store 1e300 as inf).
Millis = Annotated[float, Field(ge=0.0, le=86_400_000.0, allow_inf_nan=False)]
#: A count the database keeps as bigint.
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Decibels = Annotated[float, Field(ge=-200.0, le=10.0, allow_inf_nan=False)]


class MessageError(ValueError):
    """A result message that is not valid JSON for its schema; says which fields and why."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class LabelScore(BaseModel):
    """A label's score for a chunk. Windowed bundles (BirdNET) also say where in the chunk
    the best window lies and whether the species is expected at the station (the range
    model); fusion bundles leave those fields out."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: str = Field(min_length=1, max_length=200)
    probability: Probability
    common_name: str | None = Field(None, max_length=200)
    window_start_s: float | None = Field(None, ge=0.0, le=10.0)
    window_end_s: float | None = Field(None, ge=0.0, le=10.0)
    in_range: bool | None = Field(None, description="None: no location known, or no range model")

    @model_validator(mode="after")
    def _window_order(self) -> LabelScore:
        if (self.window_start_s is None) != (self.window_end_s is None):
            raise ValueError("window_start_s and window_end_s go together")
        if self.window_start_s is not None and self.window_start_s > self.window_end_s:  # type: ignore[operator]
            raise ValueError("window_start_s is after window_end_s")
        return self


class WindowScores(BaseModel):
    """One analysis window of a windowed bundle: where it lies in the chunk, its best labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_s: float = Field(ge=0.0, le=10.0)
    end_s: float = Field(ge=0.0, le=10.0)
    top_k: list[LabelScore] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _order(self) -> WindowScores:
        if self.start_s > self.end_s:
            raise ValueError("start_s is after end_s")
        return self


class AudioStats(BaseModel):
    """Per-chunk audio statistics the drift checks compare over time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rms_dbfs: Decibels
    noise_floor_dbfs: Decibels
    peak_dbfs: Decibels
    clipping_ratio: Probability
    silence_ratio: Probability
    spectral_centroid_hz: float = Field(ge=0.0, le=192_000.0, description="at most Nyquist")
    dc_offset: float = Field(ge=-1.0, le=1.0)


class StageTimes(BaseModel):
    """Per-stage timestamps (ns) and durations (ms); latency = difference of stamps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    captured_at: Nanos
    published_at: Nanos
    consumed_at: Nanos
    scored_at: Nanos
    decode_ms: Millis
    features_ms: Millis
    inference_ms: Millis
    branch_ms: dict[Annotated[str, Field(max_length=100)], Millis] = Field(
        default_factory=dict, max_length=64)


class AudioSource(BaseModel):
    """Where the scored chunk sits in the audio topic, so its audio can be fetched while
    the topic still holds it (the clip keeper)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: int = Field(ge=0, le=1_000_000)
    offset: int = Field(ge=0, le=2**63 - 1)


class Detection(_Message):
    """One result per chunk, on soundscape.detections.v1, keyed by station_id."""

    chunk_id: uuid.UUID
    station_id: StationId
    chunk_start: Nanos
    sample_rate: int = Field(ge=8_000, le=384_000)
    source: Literal["live", "replay"]
    bundle_version: str = Field(min_length=1, max_length=200)
    top_k: list[LabelScore] = Field(min_length=1, max_length=100)
    detections: list[LabelScore] = Field(default_factory=list, max_length=10_000,
                                         description="above threshold")
    audio: AudioStats
    timing: StageTimes
    batch_size: int = Field(ge=1, le=1_000_000)
    worker_id: str = Field(min_length=1, max_length=200)
    # Windowed bundles only: the per-window scores behind the chunk's max-pooled result,
    # and (when `worker.keep_embedding`) the chunk's embedding, the mean of its windows',
    # as base64 of little-endian float16 (2 bytes a dimension).
    windows: list[WindowScores] | None = Field(None, max_length=64)
    embedding_f16: str | None = Field(None, max_length=65_536)
    audio_source: AudioSource | None = None

    @field_validator("top_k")
    @classmethod
    def _sorted(cls, value: list[LabelScore]) -> list[LabelScore]:
        return sorted(value, key=lambda item: -item.probability)

    @property
    def top(self) -> LabelScore:
        return self.top_k[0]


class Heartbeat(_Message):
    """Station health, on soundscape.heartbeats.v1 every minute."""

    station_id: StationId
    sent_at: Nanos
    software_version: str = Field(max_length=200)
    bundle_version: str | None = Field(None, max_length=200)
    disk_free_bytes: Count
    spool_depth: Count = Field(description="chunks waiting to be sent")
    spool_bytes: Count
    oldest_spooled_chunk_start: Nanos | None = None
    evicted_chunks: Count = Field(0, description="dropped from a full spool, ever")
    cpu_temperature_c: float | None = Field(None, ge=-100.0, le=200.0, allow_inf_nan=False)
    dropped_samples: Count = 0
    overruns: Count = 0
    gaps: Count = 0
    gap_ns_total: Count = 0
    clock_offset_ms: float | None = Field(None, ge=-1e11, le=1e11, allow_inf_nan=False)
    # A station that scores its own chunks (station.edge_bundle) says how that goes; the
    # fields are left out of the JSON of stations that do not, so those send what they
    # always sent.
    edge_scored: Count | None = Field(None, description="chunks scored on the station")
    edge_skipped: Count | None = Field(
        None, description="chunks not scored on the station because scoring fell behind "
        "(their audio is kept as always)")

    def to_bytes(self) -> bytes:
        unset = {name for name in _EDGE_FIELDS if getattr(self, name) is None}
        return self.model_dump_json(exclude=unset).encode()


_EDGE_FIELDS = ("edge_scored", "edge_skipped")


class DriftReport(_Message):
    """One check over one window for one station, on soundscape.drift.v1."""

    station_id: StationId
    check: str = Field(min_length=1, max_length=100, description="e.g. noise_floor, label_js")
    kind: Literal["input", "prediction", "health"]
    window_start: Nanos
    window_end: Nanos
    value: Finite
    threshold: Finite
    alert: bool
    reference: dict[Annotated[str, Field(max_length=100)], Finite | int | str] = Field(
        default_factory=dict, max_length=100)
    detail: str = Field("", max_length=10_000)
    created_at: Nanos


M = TypeVar("M", bound=_Message)


def parse(kind: type[M], data: bytes | str | None) -> M:
    """Validate a message value; any problem is one MessageError naming the fields."""
    if data is None or data == b"":
        raise MessageError(f"{kind.__name__}: empty message value")
    try:
        return kind.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        raise MessageError(f"{kind.__name__}: {problems}") from None
