"""SQLAlchemy 2 models of the results database: what migrations create, in Python.

The migrations under `migrations/versions` own the truth (a test checks that these models
and a migrated database agree). The sink writes with COPY and plain SQL for speed; the
models serve migrations, readers in Python, and that check.

Time-series tables are range-partitioned by time (`PARTITION_KEYS`); a primary key on a
partitioned table must contain the partition key, so results are keyed by
(chunk_start, chunk_id): chunk_start is derived together with chunk_id, so the pair is
as unique as chunk_id alone, and every write is idempotent on it. Time goes first so
that live inserts land at the right-hand edge of the index, not at random pages.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    REAL,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, TIMESTAMP, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Table -> column it is range-partitioned by (timestamptz).
PARTITION_KEYS: dict[str, str] = {
    "chunks": "chunk_start",
    "detections": "chunk_start",
    "station_heartbeats": "sent_at",
    "drift_reports": "window_start",
}

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

Timestamp = TIMESTAMP(timezone=True)


def _partitioned(table: str, *args: Any) -> tuple[Any, ...]:
    return (*args, {"postgresql_partition_by": f"RANGE ({PARTITION_KEYS[table]})"})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Station(Base):
    """A field station; the sink adds it when its first result or heartbeat arrives."""

    __tablename__ = "stations"
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude"),
    )

    station_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    elevation_m: Mapped[float | None] = mapped_column(Double)
    #: Earliest and latest data time (chunk start, heartbeat sent) seen from the station.
    first_seen: Mapped[datetime] = mapped_column(Timestamp)
    last_seen: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    #: Scientific names; when set, only these are in range here (the worker's range filter).
    include_species: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    #: Scientific names never in range here, whatever the range model says.
    exclude_species: Mapped[list[str] | None] = mapped_column(ARRAY(Text))


class SigningKey(Base):
    """The public key a station (or an archive, `archive:<name>`) signs its chunks with;
    `stations add` registers it, `stations revoke` marks it (docs/explanation/security.md)."""

    __tablename__ = "signing_keys"

    signer: Mapped[str] = mapped_column(Text, primary_key=True)
    #: base64 of the 32-byte Ed25519 public key
    public_key: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ModelBundle(Base):
    """A model bundle version: registered by `models register` (the sink stores results of
    registered versions only), with its manifest's hashes, labels and parameters."""

    __tablename__ = "models"

    bundle_version: Mapped[str] = mapped_column(Text, primary_key=True)
    hashes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    labels: Mapped[list[str] | None] = mapped_column(JSONB)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Earliest and latest scoring time of a stored result made with this bundle.
    first_used: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used: Mapped[datetime | None] = mapped_column(Timestamp)
    #: When `models register` vouched for it; NULL: results naming it are refused.
    registered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: Where the bundle's files are: its copy in the bundle store (by content hash).
    location: Mapped[str | None] = mapped_column(Text)
    #: sha256 of its manifest (which names every file's sha256): its name in the store.
    content_hash: Mapped[str | None] = mapped_column(Text)
    #: The latest promote or rollback that made it active, and who did it.
    promoted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    promoted_by: Mapped[str | None] = mapped_column(Text)


class ModelPromotion(Base):
    """Every promote and rollback, in order: the newest row names the active version,
    the one workers that follow the registry run."""

    __tablename__ = "model_promotions"
    __table_args__ = (CheckConstraint("action IN ('promote', 'rollback')", name="action"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    bundle_version: Mapped[str] = mapped_column(
        Text, ForeignKey("models.bundle_version", name="fk_model_promotions_models"))
    action: Mapped[str] = mapped_column(Text)
    #: The version active before (what a rollback of a promote goes back to).
    previous_version: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    reason: Mapped[str | None] = mapped_column(Text)


class _KeptApart:
    """The columns of a result kept apart from the live tables (shadow and edge results),
    one row per (chunk, bundle version)."""

    chunk_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    bundle_version: Mapped[str] = mapped_column(Text)
    station_id: Mapped[str] = mapped_column(Text)
    chunk_start: Mapped[datetime] = mapped_column(Timestamp)
    top_label: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(REAL)
    #: {label: probability} of the labels above their thresholds
    detected: Mapped[dict[str, float]] = mapped_column(JSONB)
    #: [[label, probability], ...] best first
    top_k: Mapped[list[Any]] = mapped_column(JSONB)
    inference_ms: Mapped[float | None] = mapped_column(REAL)
    worker_id: Mapped[str | None] = mapped_column(Text)
    scored_at: Mapped[datetime] = mapped_column(Timestamp)
    written_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class ShadowResult(_KeptApart, Base):
    """A candidate bundle's result for a chunk (`worker --shadow`), kept apart from the
    live tables so it changes nothing that dashboards, alerts or drift checks read."""

    __tablename__ = "shadow_results"
    __table_args__ = (
        PrimaryKeyConstraint("chunk_id", "bundle_version"),
        Index(None, "bundle_version", "chunk_start"),
    )


class EdgeResult(_KeptApart, Base):
    """A station's own result for a chunk (`station.edge_bundle`, stored by `sink --edge`;
    `worker_id` is `edge:<station_id>`), kept apart like a shadow result, with who signed
    it and when the chunk was captured (alert latency)."""

    __tablename__ = "edge_results"
    __table_args__ = (
        PrimaryKeyConstraint("chunk_id", "bundle_version"),
        Index(None, "station_id", "chunk_start"),
    )

    #: whose key signed it, as the sink verified it; null when unsigned or not checked
    signer: Mapped[str | None] = mapped_column(Text)
    captured_at: Mapped[datetime] = mapped_column(Timestamp)


class Chunk(Base):
    """One row per scored chunk: its top label, audio statistics and per-stage times."""

    __tablename__ = "chunks"
    __table_args__ = _partitioned(
        "chunks",
        PrimaryKeyConstraint("chunk_start", "chunk_id"),
        CheckConstraint("source IN ('live', 'replay')", name="source"),
        Index(None, "station_id", "chunk_start"),
        Index(None, "chunk_id"),
        Index(None, "chunk_start", postgresql_using="brin"),
        Index(None, "written_at", postgresql_using="brin"),
    )

    chunk_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    chunk_start: Mapped[datetime] = mapped_column(Timestamp)
    #: chunk_start exactly (timestamptz keeps microseconds); chunk_id derives from it.
    chunk_start_ns: Mapped[int] = mapped_column(BigInteger)
    station_id: Mapped[str] = mapped_column(Text)
    sample_rate: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    bundle_version: Mapped[str] = mapped_column(Text)
    top_label: Mapped[str] = mapped_column(Text)
    top_probability: Mapped[float] = mapped_column(REAL)
    #: [{"label": ..., "probability": ...}, ...], most probable first.
    top_k: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    detection_count: Mapped[int] = mapped_column(SmallInteger)
    rms_dbfs: Mapped[float] = mapped_column(REAL)
    noise_floor_dbfs: Mapped[float] = mapped_column(REAL)
    peak_dbfs: Mapped[float] = mapped_column(REAL)
    clipping_ratio: Mapped[float] = mapped_column(REAL)
    silence_ratio: Mapped[float] = mapped_column(REAL)
    spectral_centroid_hz: Mapped[float] = mapped_column(REAL)
    dc_offset: Mapped[float] = mapped_column(REAL)
    captured_at: Mapped[datetime] = mapped_column(Timestamp)
    published_at: Mapped[datetime] = mapped_column(Timestamp)
    consumed_at: Mapped[datetime] = mapped_column(Timestamp)
    scored_at: Mapped[datetime] = mapped_column(Timestamp)
    #: When the sink's transaction stored the row: the last stage of the latency.
    written_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    decode_ms: Mapped[float] = mapped_column(REAL)
    features_ms: Mapped[float] = mapped_column(REAL)
    inference_ms: Mapped[float] = mapped_column(REAL)
    branch_ms: Mapped[dict[str, float]] = mapped_column(JSONB)
    batch_size: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(Text)
    #: Windowed bundles: [{"start_s", "end_s", "top_k": [...]}, ...]; NULL for fusion.
    windows: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    #: Windowed bundles with `worker.keep_embedding`: little-endian float16, 2 bytes a dim.
    embedding: Mapped[bytes | None] = mapped_column(BYTEA)


class DetectionRow(Base):
    """One row per (chunk, label) above the label's threshold."""

    __tablename__ = "detections"
    __table_args__ = _partitioned(
        "detections",
        PrimaryKeyConstraint("chunk_start", "chunk_id", "label"),
        Index(None, "station_id", "chunk_start"),
        Index(None, "label", "chunk_start"),
    )

    chunk_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    chunk_start: Mapped[datetime] = mapped_column(Timestamp)
    label: Mapped[str] = mapped_column(Text)
    station_id: Mapped[str] = mapped_column(Text)
    probability: Mapped[float] = mapped_column(REAL)
    #: Windowed bundles only (NULL for fusion): the label's common name, the window of
    #: the chunk (seconds) it scored best in, and whether the species is expected at the
    #: station's location and week (NULL: no location or no range model).
    common_name: Mapped[str | None] = mapped_column(Text)
    window_start_s: Mapped[float | None] = mapped_column(REAL)
    window_end_s: Mapped[float | None] = mapped_column(REAL)
    in_range: Mapped[bool | None] = mapped_column(Boolean)


class StationHeartbeat(Base):
    """Station health, one row a minute a station."""

    __tablename__ = "station_heartbeats"
    __table_args__ = _partitioned(
        "station_heartbeats",
        PrimaryKeyConstraint("station_id", "sent_at"),
    )

    station_id: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(Timestamp)
    software_version: Mapped[str] = mapped_column(Text)
    bundle_version: Mapped[str | None] = mapped_column(Text)
    disk_free_bytes: Mapped[int] = mapped_column(BigInteger)
    spool_depth: Mapped[int] = mapped_column(BigInteger)
    spool_bytes: Mapped[int] = mapped_column(BigInteger)
    oldest_spooled_chunk_start: Mapped[datetime | None] = mapped_column(Timestamp)
    evicted_chunks: Mapped[int] = mapped_column(BigInteger)
    cpu_temperature_c: Mapped[float | None] = mapped_column(REAL)
    dropped_samples: Mapped[int] = mapped_column(BigInteger)
    overruns: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[int] = mapped_column(BigInteger)
    gap_ns_total: Mapped[int] = mapped_column(BigInteger)
    clock_offset_ms: Mapped[float | None] = mapped_column(REAL)
    written_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    # stations scoring their own chunks (station.edge_bundle); null for the others
    edge_scored: Mapped[int | None] = mapped_column(BigInteger)
    edge_skipped: Mapped[int | None] = mapped_column(BigInteger)


class DriftReportRow(Base):
    """One drift check over one window for one station."""

    __tablename__ = "drift_reports"
    __table_args__ = _partitioned(
        "drift_reports",
        PrimaryKeyConstraint("station_id", "check_name", "window_start", "window_end"),
        CheckConstraint("kind IN ('input', 'prediction', 'health')", name="kind"),
        Index("ix_drift_reports_alerts", "window_start", postgresql_where="alert"),
    )

    station_id: Mapped[str] = mapped_column(Text)
    #: The message's `check` (a reserved word in SQL).
    check_name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    window_start: Mapped[datetime] = mapped_column(Timestamp)
    window_end: Mapped[datetime] = mapped_column(Timestamp)
    value: Mapped[float] = mapped_column(Double)
    threshold: Mapped[float] = mapped_column(Double)
    alert: Mapped[bool] = mapped_column(Boolean)
    reference: Mapped[dict[str, Any]] = mapped_column(JSONB)
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    written_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Clip(Base):
    """A chunk's audio kept by the clip keeper (path relative to `clips.dir`); an evicted
    clip keeps its row, marked, so the record says what was once there."""

    __tablename__ = "clips"
    __table_args__ = (
        CheckConstraint("reason IN ('detection', 'negative')", name="reason"),
        CheckConstraint("bytes >= 0", name="bytes"),
        Index(None, "station_id", "chunk_start"),
        Index("ix_clips_kept_at_live", "kept_at", postgresql_where="evicted_at IS NULL"),
    )

    chunk_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    chunk_start: Mapped[datetime] = mapped_column(Timestamp)
    station_id: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    codec: Mapped[str] = mapped_column(Text)
    #: detection: a label at least clips.min_confidence; negative: the random sample.
    reason: Mapped[str] = mapped_column(Text)
    top_label: Mapped[str] = mapped_column(Text)
    top_probability: Mapped[float] = mapped_column(REAL)
    kept_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    evicted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Review(Base):
    """A person's verdict on a detection (chunk and label): confirm, reject, or relabel
    to new_label. The model's rows are never changed; the latest review counts."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("verdict IN ('confirm', 'reject', 'relabel')", name="verdict"),
        CheckConstraint("(verdict = 'relabel') = (new_label IS NOT NULL)", name="new_label"),
        Index(None, "chunk_id"),
        Index(None, "created_at"),
    )

    review_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    chunk_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    chunk_start: Mapped[datetime] = mapped_column(Timestamp)
    label: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(Text)
    new_label: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class WebUser(Base):
    """Who may review and upload in the web app (`soundscape web user add`)."""

    __tablename__ = "web_users"
    __table_args__ = (CheckConstraint("role IN ('reviewer', 'admin')", name="role"),)

    username: Mapped[str] = mapped_column(Text, primary_key=True)
    #: argon2id, in the PHC string format argon2-cffi writes
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Notification(Base):
    """An event the notifier sends: claimed (a row) before it is sent, `sent_at` after,
    so each is sent once across restarts; its times feed de-duplication and rate limits."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("kind IN ('detection', 'silent', 'drift_alert')", name="kind"),
        Index(None, "rule", "event_time"),
        Index("ix_notifications_pending", "claimed_at", postgresql_where="sent_at IS NULL"),
    )

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    station_id: Mapped[str] = mapped_column(Text)
    species: Mapped[str | None] = mapped_column(Text)
    dedup_key: Mapped[str] = mapped_column(Text)
    event_time: Mapped[datetime] = mapped_column(Timestamp)
    title: Mapped[str] = mapped_column(Text)
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text))
    claimed_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
