"""The sink's fast path for detection messages: msgspec structs that mirror messages.py.

The sink parses every detection it stores. pydantic (messages.Detection) builds eleven
model instances a message and cost about 20 of the sink's 50 µs of Python per result;
msgspec decodes and checks the same schema into the structs below in about 8, and the
sink's row encoding reads them faster too. The structs copy messages.py field by field
and constraint by constraint, and they are only a fast path: a message they refuse is
parsed again by pydantic, which stays the authority on what is valid, on lax inputs
(a number sent as a string) and on the reason a message is dead-lettered. Whatever the
fast path accepts, pydantic accepts with the same values. tests/unit/core/
test_detection_decoder.py holds the two together: their JSON schemas compared path by
path (a field added to messages.py and not here fails it), every field at every edge
value, and random combinations.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from soundscape.envelope import STATION_ID_RE
from soundscape.messages import Detection, parse

# msgspec matches patterns with re.search, where `$` also matches before a final newline;
# \A...\Z is what pydantic's `^...$` means (its Rust regex has no such exception).
_StationId = Annotated[str, Meta(pattern=rf"\A(?:{STATION_ID_RE.pattern})\Z", max_length=64)]
_Nanos = Annotated[int, Meta(ge=0, le=2**63 - 1)]
_Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
_Millis = Annotated[float, Meta(ge=0.0, le=86_400_000.0)]
_Decibels = Annotated[float, Meta(ge=-200.0, le=10.0)]
_WindowTime = Annotated[float, Meta(ge=0.0, le=10.0)]
_Text200 = Annotated[str, Meta(max_length=200)]
_NonEmpty200 = Annotated[str, Meta(min_length=1, max_length=200)]


class FastLabelScore(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """messages.LabelScore; its None fields are left out when encoded, as pydantic's
    exclude_none leaves them out of the stored JSON."""

    label: _NonEmpty200
    probability: _Probability
    common_name: _Text200 | None = None
    window_start_s: _WindowTime | None = None
    window_end_s: _WindowTime | None = None
    in_range: bool | None = None

    def __post_init__(self) -> None:
        if (self.window_start_s is None) != (self.window_end_s is None):
            raise ValueError("window_start_s and window_end_s go together")
        if self.window_start_s is not None and self.window_start_s > self.window_end_s:  # type: ignore[operator]
            raise ValueError("window_start_s is after window_end_s")


class FastWindowScores(Struct, forbid_unknown_fields=True, frozen=True):
    start_s: _WindowTime
    end_s: _WindowTime
    top_k: Annotated[list[FastLabelScore], Meta(max_length=20)] = msgspec.field(
        default_factory=list)

    def __post_init__(self) -> None:
        if self.start_s > self.end_s:
            raise ValueError("start_s is after end_s")


class FastAudioStats(Struct, forbid_unknown_fields=True, frozen=True):
    rms_dbfs: _Decibels
    noise_floor_dbfs: _Decibels
    peak_dbfs: _Decibels
    clipping_ratio: _Probability
    silence_ratio: _Probability
    spectral_centroid_hz: Annotated[float, Meta(ge=0.0, le=192_000.0)]
    dc_offset: Annotated[float, Meta(ge=-1.0, le=1.0)]


class FastStageTimes(Struct, forbid_unknown_fields=True, frozen=True):
    captured_at: _Nanos
    published_at: _Nanos
    consumed_at: _Nanos
    scored_at: _Nanos
    decode_ms: _Millis
    features_ms: _Millis
    inference_ms: _Millis
    branch_ms: Annotated[dict[Annotated[str, Meta(max_length=100)], _Millis],
                         Meta(max_length=64)] = msgspec.field(default_factory=dict)


class FastAudioSource(Struct, forbid_unknown_fields=True, frozen=True):
    partition: Annotated[int, Meta(ge=0, le=1_000_000)]
    offset: _Nanos


class FastDetection(Struct, forbid_unknown_fields=True, frozen=True):
    """messages.Detection, read by the sink as it reads a Detection (same attributes)."""

    chunk_id: uuid.UUID
    station_id: _StationId
    chunk_start: _Nanos
    sample_rate: Annotated[int, Meta(ge=8_000, le=384_000)]
    source: Literal["live", "replay"]
    bundle_version: _NonEmpty200
    top_k: Annotated[list[FastLabelScore], Meta(min_length=1, max_length=100)]
    audio: FastAudioStats
    timing: FastStageTimes
    batch_size: Annotated[int, Meta(ge=1, le=1_000_000)]
    worker_id: _NonEmpty200
    schema_version: Literal[1] = 1
    detections: Annotated[list[FastLabelScore], Meta(max_length=10_000)] = msgspec.field(
        default_factory=list)
    windows: Annotated[list[FastWindowScores], Meta(max_length=64)] | None = None
    embedding_f16: Annotated[str, Meta(max_length=65_536)] | None = None
    audio_source: FastAudioSource | None = None

    def __post_init__(self) -> None:
        # Detection._sorted: best first (a stable sort, as pydantic's validator's)
        self.top_k.sort(key=_minus_probability)

    @property
    def top(self) -> FastLabelScore:
        return self.top_k[0]

    def to_detection(self) -> Detection:
        """The same result as the contract's model (for code outside the hot path)."""
        return Detection.model_validate(msgspec.to_builtins(self))


def _minus_probability(score: FastLabelScore) -> float:
    return -score.probability


#: A detection as the sink holds it: decoded by the fast path, or by pydantic.
AnyDetection = Detection | FastDetection
DETECTION_TYPES = (Detection, FastDetection)

_DECODER = msgspec.json.Decoder(FastDetection)
_ENCODER = msgspec.json.Encoder()


def decode_detection(data: bytes | str | None) -> AnyDetection:
    """A detection message's value, checked; raises messages.MessageError (pydantic's
    reasons) for one that is not valid."""
    if data:
        try:
            return _DECODER.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass  # refused here: pydantic says whether it is valid after all, and why not
    return parse(Detection, data)


def struct_json(value: Any) -> bytes | None:
    """JSON of a fast-path value (a struct, or a list that starts with one); None for
    anything else, which the caller encodes as before."""
    if isinstance(value, Struct) or (type(value) is list and value
                                     and isinstance(value[0], Struct)):
        return _ENCODER.encode(value)
    return None
