"""The chunk envelope: Kafka headers that travel with every audio chunk.

Value = the encoded audio; key = station_id; everything else is a header, UTF-8 text.
Decoding never raises anything but `EnvelopeError`, which lists every problem found,
so a dead-letter reason says exactly what was wrong with a message.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
CODECS = ("flac", "wav")
SOURCES = ("live", "replay")
CHUNK_SECONDS = 10
STATION_ID_RE = re.compile(r"[a-z0-9-]{1,64}")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 384_000
MAX_CHANNELS = 8
_INT64_MAX = 2**63 - 1
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

#: Fixed namespace for chunk ids; changing it would re-identify every chunk ever stored.
CHUNK_NAMESPACE = uuid.UUID("6f1c1f52-4b8e-5d7a-9a57-5e0d2c1a7c10")

REQUIRED_HEADERS = (
    "schema_version",
    "station_id",
    "chunk_start",
    "sample_rate",
    "channels",
    "codec",
    "seq",
    "sha256",
    "captured_at",
    "published_at",
    "source",
)
#: Optional headers the envelope knows: `chunk_id` (checked against the derivation) and
#: `gap_ns` (audio missing right before this chunk, as the station measured it).
OPTIONAL_HEADERS = ("chunk_id", "gap_ns")

Codec = Literal["flac", "wav"]
Source = Literal["live", "replay"]
Headers = Sequence[tuple[str, bytes | str | None]]


class EnvelopeError(ValueError):
    """A message whose headers or payload break the envelope contract."""

    def __init__(self, problems: Sequence[str], unsupported_schema: bool = False) -> None:
        self.problems = list(problems)
        #: the message is of a schema version this code cannot read (perhaps newer)
        self.unsupported_schema = unsupported_schema
        super().__init__("; ".join(self.problems))


def chunk_id_for(station_id: str, chunk_start_ns: int) -> uuid.UUID:
    """Same station and start, same id: every write downstream is idempotent on it."""
    return uuid.uuid5(CHUNK_NAMESPACE, f"{station_id}/{chunk_start_ns}")


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True, slots=True)
class ChunkEnvelope:
    station_id: str
    chunk_start: int
    sample_rate: int
    channels: int
    codec: Codec
    seq: int
    sha256: str
    captured_at: int
    published_at: int
    source: Source
    schema_version: int = SCHEMA_VERSION
    gap_ns: int = 0
    extra: tuple[tuple[str, bytes], ...] = field(default=())

    @property
    def chunk_id(self) -> uuid.UUID:
        return chunk_id_for(self.station_id, self.chunk_start)

    @property
    def chunk_end(self) -> int:
        return self.chunk_start + CHUNK_SECONDS * 1_000_000_000

    @property
    def key(self) -> bytes:
        return self.station_id.encode()

    def with_published_at(self, published_at: int) -> ChunkEnvelope:
        return replace(self, published_at=published_at)

    def to_headers(self) -> list[tuple[str, bytes]]:
        """Headers in a fixed order; unknown headers read earlier are passed on as they were."""
        self.validate()
        values = {
            "schema_version": self.schema_version,
            "station_id": self.station_id,
            "chunk_start": self.chunk_start,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "codec": self.codec,
            "seq": self.seq,
            "sha256": self.sha256,
            "captured_at": self.captured_at,
            "published_at": self.published_at,
            "source": self.source,
            "chunk_id": self.chunk_id,
        }
        headers = [(name, str(value).encode()) for name, value in values.items()]
        if self.gap_ns:
            headers.append(("gap_ns", str(self.gap_ns).encode()))
        headers.extend(self.extra)
        return headers

    def validate(self, payload: bytes | None = None) -> None:
        """Raise EnvelopeError listing every field that breaks the contract."""
        problems = _field_problems(self)
        if payload is not None and not problems and sha256_hex(payload) != self.sha256:
            problems.append(
                f"sha256: payload hashes to {sha256_hex(payload)}, header says {self.sha256}"
            )
        if problems:
            raise EnvelopeError(problems)

    @classmethod
    def for_payload(
        cls,
        payload: bytes,
        *,
        station_id: str,
        chunk_start: int,
        sample_rate: int,
        channels: int = 1,
        codec: Codec = "flac",
        seq: int,
        captured_at: int,
        source: Source = "live",
        gap_ns: int = 0,
    ) -> ChunkEnvelope:
        """Envelope for a freshly encoded payload; published_at is set when it is sent."""
        envelope = cls(
            station_id=station_id,
            chunk_start=chunk_start,
            sample_rate=sample_rate,
            channels=channels,
            codec=codec,
            seq=seq,
            sha256=sha256_hex(payload),
            captured_at=captured_at,
            published_at=0,
            source=source,
            gap_ns=gap_ns,
        )
        envelope.validate()
        return envelope

    @classmethod
    def from_headers(
        cls, headers: Headers | None, payload: bytes | None = None, key: bytes | None = None
    ) -> ChunkEnvelope:
        """Parse and validate; `payload` checks the sha256, `key` checks the station."""
        problems: list[str] = []
        raw = _header_map(headers or (), problems)
        text: dict[str, str] = {}
        for name, value in raw.items():
            if name not in REQUIRED_HEADERS and name not in OPTIONAL_HEADERS:
                continue  # unknown headers are carried through as bytes, unread
            try:
                text[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{name}: header is not UTF-8 text")
        for name in REQUIRED_HEADERS:
            if name not in raw:
                problems.append(f"{name}: header missing")

        ints: dict[str, int] = {}
        for name in (
            "schema_version",
            "chunk_start",
            "sample_rate",
            "channels",
            "seq",
            "captured_at",
            "published_at",
            "gap_ns",
        ):
            if name in text:
                parsed = _parse_int(name, text[name], problems)
                if parsed is not None:
                    ints[name] = parsed
        version = ints.get("schema_version")
        if version is not None and version not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
            raise EnvelopeError(
                [f"schema_version: {version} is not supported (this worker reads {supported})"],
                unsupported_schema=True,
            )
        if problems:
            raise EnvelopeError(problems)

        extra = tuple(
            (name, value)
            for name, value in raw.items()
            if name not in REQUIRED_HEADERS and name not in OPTIONAL_HEADERS
        )
        envelope = cls(
            station_id=text["station_id"],
            chunk_start=ints["chunk_start"],
            sample_rate=ints["sample_rate"],
            channels=ints["channels"],
            codec=text["codec"],  # type: ignore[arg-type]  # checked by validate()
            seq=ints["seq"],
            sha256=text["sha256"],
            captured_at=ints["captured_at"],
            published_at=ints["published_at"],
            source=text["source"],  # type: ignore[arg-type]
            schema_version=ints["schema_version"],
            gap_ns=ints.get("gap_ns", 0),
            extra=extra,
        )
        problems = _field_problems(envelope)
        if not problems and "chunk_id" in text and text["chunk_id"] != str(envelope.chunk_id):
            problems.append(
                f"chunk_id: header says {text['chunk_id']}, station and chunk_start give "
                f"{envelope.chunk_id}"
            )
        if not problems and key is not None and key != envelope.key:
            problems.append(
                f"key: message key {key!r} differs from station_id {envelope.station_id!r}"
            )
        if problems:
            raise EnvelopeError(problems)
        envelope.validate(payload)
        return envelope


def _header_map(headers: Iterable[tuple[str, bytes | str | None]], problems: list[str]) -> dict:
    raw: dict[str, bytes] = {}
    try:
        items = list(headers)
    except TypeError:
        problems.append("headers: not a list of (name, value) pairs")
        return raw
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            problems.append(f"headers: malformed entry {item!r:.60}")
            continue
        name, value = item
        if value is None:
            value = b""
        elif isinstance(value, str):
            try:
                value = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                problems.append(f"{name}: header value is not encodable text")
                continue
        elif not isinstance(value, (bytes, bytearray, memoryview)):
            problems.append(f"{name}: header value is {type(value).__name__}, not bytes")
            continue
        if name in raw:
            problems.append(f"{name}: header appears more than once")
            continue
        raw[name] = bytes(value)
    return raw


def _parse_int(name: str, value: str, problems: list[str]) -> int | None:
    if not re.fullmatch(r"-?[0-9]{1,19}", value):
        problems.append(f"{name}: {value!r:.40} is not a decimal integer")
        return None
    parsed = int(value)
    if not -_INT64_MAX - 1 <= parsed <= _INT64_MAX:
        problems.append(f"{name}: {value} does not fit in 64 bits")
        return None
    return parsed


def _field_problems(e: ChunkEnvelope) -> list[str]:
    problems: list[str] = []
    if e.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        problems.append(f"schema_version: {e.schema_version} is not supported")
    if not isinstance(e.station_id, str) or not STATION_ID_RE.fullmatch(e.station_id):
        problems.append(
            f"station_id: {e.station_id!r:.80} must match [a-z0-9-]{{1,64}} "
            "(lower-case letters, digits, '-')"
        )
    if not 0 <= e.chunk_start <= _INT64_MAX:
        problems.append(f"chunk_start: {e.chunk_start} must be ns since 1970 UTC, >= 0")
    if not MIN_SAMPLE_RATE <= e.sample_rate <= MAX_SAMPLE_RATE:
        problems.append(
            f"sample_rate: {e.sample_rate} Hz outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}"
        )
    if not 1 <= e.channels <= MAX_CHANNELS:
        problems.append(f"channels: {e.channels} outside 1..{MAX_CHANNELS}")
    if e.codec not in CODECS:
        problems.append(f"codec: {e.codec!r:.40} is not one of {', '.join(CODECS)}")
    if e.seq < 0:
        problems.append(f"seq: {e.seq} must be >= 0")
    if not isinstance(e.sha256, str) or not _SHA256_RE.fullmatch(e.sha256):
        problems.append(f"sha256: {e.sha256!r:.80} is not 64 lower-case hex digits")
    for name in ("captured_at", "published_at", "gap_ns"):
        if getattr(e, name) < 0:
            problems.append(f"{name}: {getattr(e, name)} must be >= 0")
    if e.source not in SOURCES:
        problems.append(f"source: {e.source!r:.40} is not one of {', '.join(SOURCES)}")
    return problems
