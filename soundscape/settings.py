"""One typed settings object for every service and tool.

Sources, strongest first: explicit overrides in code, environment variables
(`SOUNDSCAPE_*`, nested fields with `__`, e.g. `SOUNDSCAPE_KAFKA__PORT=9092`), the TOML
file named by `SOUNDSCAPE_CONFIG` (else `./soundscape.toml` if present), then defaults.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: Kafka release the project fetches. 4.0 is the newest line that both clients in the
#: stack are tested against: librdkafka (confluent-kafka) speaks every API version the
#: 4.x broker kept, and faust-streaming's client (aiokafka >= 0.12) is CI-tested by
#: faust-streaming against Apache Kafka 4.0. See docs/explanation/pipeline.md, "Why Kafka 4.0".
DEFAULT_KAFKA_VERSION = "4.0.2"

#: A chunk is at most 10 s of 8 channels at 48 kHz in 16-bit WAV (7.7 MB); real chunks
#: (mono 32 kHz FLAC) are ~0.4 MB. The limit is set on broker, topics and clients alike.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def default_state_dir() -> Path:
    """Root uses /var/lib (FHS, and reachable by the `postgres` user); others XDG state."""
    if os.geteuid() == 0:
        return Path("/var/lib/soundscape")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "soundscape"


class TopicSettings(BaseModel):
    """Topic names are contracts (docs/architecture.md); change them only to namespace."""

    audio: str = "soundscape.audio.v1"
    detections: str = "soundscape.detections.v1"
    audio_dlq: str = "soundscape.audio.dlq.v1"
    heartbeats: str = "soundscape.heartbeats.v1"
    drift: str = "soundscape.drift.v1"
    results_dlq: str = "soundscape.results.dlq.v1"
    shadow_detections: str = Field("soundscape.detections.shadow.v1",
                                    description="results of candidate bundles scored in shadow")
    edge_detections: str = Field("soundscape.detections.edge.v1",
                                  description="results stations scored themselves "
                                  "(station.edge_bundle), stored apart by `sink --edge`")
    partitions: int = Field(6, ge=1, le=1000)
    retention_hours: int = Field(24 * 7, ge=1, description="Audio and DLQ retention")
    results_retention_hours: int = Field(24 * 30, ge=1, description="Results retention")
    retention_gb: float | None = Field(
        None, gt=0, description="audio and DLQ: also drop the oldest audio past this many GB "
        "per topic (split over its partitions), so a stalled consumer never fills the "
        "brokers' disks; unset: by time only")

    def all_names(self) -> list[str]:
        return [
            self.audio, self.detections, self.audio_dlq, self.heartbeats, self.drift,
            self.results_dlq, self.shadow_detections, self.edge_detections,
        ]


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = Field(
        None, description="External brokers; unset means the broker `soundscape infra up` runs"
    )
    version: str = DEFAULT_KAFKA_VERSION
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port once and keeps it")
    controller_port: int = Field(0, ge=0, le=65535)
    stations_host: str = Field(
        "127.0.0.1",
        description="where the local broker's SASL_SSL listener for stations listens "
                    "(0.0.0.0 or this machine's address to let remote stations in)")
    stations_port: int = Field(
        0, ge=0, le=65535,
        description="its port; 0 picks a free port once and keeps it. With bootstrap_servers "
                    "set: the SASL_SSL listener of a broker serving this deployment's "
                    "certificate (docker-compose), where `stations add` enrols stations")
    stations_advertised_host: str | None = Field(
        None, description="the name stations reach the broker by (in their config bundle and "
                          "the certificate); stations_host if unset")
    heap: str = "768m"
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024 * 1024)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    start_timeout_s: float = Field(90.0, gt=0)
    session_timeout_ms: int = Field(
        10_000, ge=6_000, le=300_000,
        description="a consumer silent this long (killed) leaves its group and its partitions "
        "move (librdkafka's default is 45 s); workers use worker.session_timeout_ms")
    instance_id: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$",
        description="static group membership: a name for this process that stays the same "
        "across restarts (one per running process); a restarted consumer gets its partitions "
        "back at once, without a rebalance")
    assignment_strategy: Literal["range", "roundrobin", "cooperative-sticky"] = Field(
        "range",
        description="how a group shares partitions; cooperative-sticky moves only the partitions "
        "that must move when a member joins or leaves (the others keep working), but one chaos "
        "run left partitions unassigned with it, so eager range stays the default. Changing it "
        "on a running group takes two rolling restarts (list both, then the new one alone)")
    debug: str | None = Field(
        None, description="librdkafka debug contexts for every client, e.g. cgrp,eos,fetch"
    )


class PostgresSettings(BaseModel):
    url: SecretStr | None = Field(
        None, description="External database URL; unset means the cluster `infra up` runs"
    )
    reader_url: SecretStr | None = Field(
        None, description="Read-only URL for an external database (Grafana, reports)"
    )
    owner_url: SecretStr | None = Field(
        None, description="URL of the role owning the schema, for migrations and retention "
                          "on an external database; `url` if unset")
    web_url: SecretStr | None = Field(
        None, description="URL of the web app's role on an external database; `reader_url`, "
                          "then `url`, if unset")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port once and keeps it")
    database: str = "soundscape"
    owner_user: str = Field("soundscape_owner", description="owns the database and its "
                            "tables: migrations (`db upgrade`) and retention (`db maintain`)")
    writer_user: str = Field("soundscape_writer", description="the sink: SELECT, INSERT and "
                             "UPDATE on the tables, new partitions through a function")
    reader_user: str = "soundscape_reader"
    web_user: str = Field("soundscape_web", description="the web app's role: SELECT, "
                          "INSERT on reviews, statement timeout")
    owner_password: SecretStr | None = Field(None, description="Generated at init if unset")
    writer_password: SecretStr | None = Field(None, description="Generated at init if unset")
    reader_password: SecretStr | None = Field(None, description="Generated at init if unset")
    web_password: SecretStr | None = Field(None, description="Generated at init if unset")
    bin_dir: Path | None = Field(None, description="PostgreSQL server binaries; found if unset")
    os_user: str = Field("postgres", description="Runs the server when Soundscape runs as root")
    start_timeout_s: float = Field(60.0, gt=0)
    web_statement_timeout_s: float = Field(
        15.0, gt=0, le=86_400,
        description="longest query of the web app's role; a page waits no longer")
    reader_statement_timeout_s: float = Field(
        60.0, gt=0, le=86_400,
        description="longest query of the read-only role (dashboards, reports); longer ones "
                    "are cancelled, so one heavy panel cannot hold the database")
    superuser_password: SecretStr | None = Field(
        None, description="of the local cluster's `postgres` role; generated at init if unset")


class WorkerSettings(BaseModel):
    group_id: str = Field("soundscape-workers", description="Kafka consumer group of workers")
    batch_size: int = Field(32, ge=1, le=4096)
    batch_timeout_ms: int = Field(200, ge=1)
    decode_threads: int = Field(2, ge=1, le=64)
    bundle: Path | None = Field(None, description="Model bundle folder; the demo bundle if unset")
    top_k: int = Field(5, ge=1, le=100, description="Labels kept per result")
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    transaction_timeout_ms: int = Field(60_000, ge=1_000)
    session_timeout_ms: int = Field(
        15_000, ge=6_000, le=300_000,
        description="a worker silent this long (crashed) leaves the group; its partitions move",
    )
    # Windowed bundles (BirdNET): how windows are cut and results filtered.
    window_hop_s: float | None = Field(
        None, gt=0, le=60,
        description="seconds between window starts; window length minus hop is the overlap "
                    "(BirdNET users often use 1-2 s of overlap); unset: the bundle's (no overlap)")
    sensitivity: float | None = Field(
        None, ge=0.5, le=1.5,
        description="BirdNET's sigmoid slope: higher gives higher confidences; unset: the bundle's")
    threshold: float | None = Field(
        None, ge=0, le=1,
        description="detection threshold for labels the bundle names no threshold for "
                    "(unset: 0.5 for fusion bundles, the bundle's for windowed ones)")
    location_filter: Literal["mark", "drop", "off"] = Field(
        "mark", description="species outside the range expected at the station's location and "
                            "week: mark them (in_range false), drop them, or skip the check")
    window_top_k: int = Field(3, ge=0, le=20, description="labels kept per window of a windowed bundle")
    keep_embedding: bool = Field(
        False, description="send each chunk's embedding (windowed bundles; float16, 2 KB) "
                           "with its result, for clustering and search")
    sites_ttl_s: float = Field(60.0, gt=0, description="how long station locations are cached")
    follow_registry: bool = Field(
        False, description="run the registry's active bundle (models promote / rollback) and "
        "switch to a newly promoted one between batches, without a restart")
    registry_poll_s: float = Field(5.0, gt=0, le=3600,
                                   description="how often a following worker reads the registry")


class SinkSettings(BaseModel):
    """The PostgreSQL sink (soundscape.sinks) and `soundscape db maintain`."""

    batch_size: int = Field(2000, ge=1, description="Messages per database transaction")
    batch_timeout_ms: int = Field(500, ge=1, description="Longest wait to fill a batch")
    group_id: str = Field("soundscape-sink", min_length=1, description="Kafka consumer group")
    retry_initial_ms: int = Field(250, ge=1, description="First wait after a database failure")
    retry_max_ms: int = Field(30_000, ge=1, description="Longest wait between database retries")
    partition_interval: Literal["day", "week", "month"] = Field(
        "month", description="Time span of one partition of the time-series tables"
    )
    partitions_ahead: int = Field(3, ge=1, le=120, description="Future partitions kept ready")
    retention_days: int = Field(
        0, ge=0, description="Drop partitions older than this; 0 keeps everything"
    )
    maintenance_interval_s: int = Field(
        3600, ge=0, description="How often the sink runs partition maintenance; 0: never"
    )
    bundles: Literal["registered", "any"] = Field(
        "registered",
        description="store results of bundle versions `models register` vouched for "
                    "(others go to the dead-letter topic), or of any version")


class ClipSettings(BaseModel):
    """The clip keeper (`soundscape clips run`): the audio of chunks worth listening to,
    kept after the audio topic's retention has dropped it."""

    dir: Path | None = Field(None, description="where clips are written; <state_dir>/clips "
                                               "if unset")
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0,
        description="keep a chunk with a detection at least this probable")
    negative_sample_rate: float = Field(
        0.02, ge=0.0, le=1.0,
        description="share of the other chunks kept too (negatives for training), "
                    "chosen by chunk id, so a replay keeps the same ones")
    max_bytes: int = Field(
        10 * 1024**3, ge=1024 * 1024,
        description="disk quota of the clips; past it the oldest unreviewed clips go first "
                    "(a reviewed clip is never evicted)")
    group_id: str = Field("soundscape-clips", min_length=1, description="Kafka consumer group")
    batch_size: int = Field(200, ge=1, le=10_000, description="detections per batch")
    batch_timeout_ms: int = Field(500, ge=1, description="longest wait to fill a batch")


class WebSettings(BaseModel):
    """The web app (`soundscape web`): listen to detections, review them, classify uploads."""

    host: str = Field("127.0.0.1", description="where it listens; 0.0.0.0 lets others in "
                                               "(put it behind TLS then: secure_cookies)")
    port: int = Field(8080, ge=0, le=65535)
    public_read: bool = Field(True, description="pages and the read API without logging in; "
                                                "reviewing and uploading always need a login")
    page_size: int = Field(50, ge=1, le=1000, description="detections per page")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024,
                                  description="largest upload to /api/v1/classify")
    max_upload_seconds: float = Field(600.0, gt=0, le=86_400,
                                      description="longest audio /api/v1/classify scores")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a login lasts")
    secure_cookies: bool = Field(False, description="send the session cookie over HTTPS only "
                                                    "(set when a TLS proxy fronts the app)")


class NotifyRule(BaseModel):
    """One notification rule: what to tell, whom, how often."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["detection", "silent", "drift_alert"] = "detection"
    species: list[str] = Field(default_factory=lambda: ["any"],
                               description="labels (scientific names) or 'any'")
    stations: list[str] = Field(default_factory=list, description="empty: every station")
    min_confidence: float = Field(0.8, ge=0.0, le=1.0)
    silent_minutes: int = Field(30, ge=1, description="kind silent: after this long")
    cooldown_minutes: float = Field(
        30.0, ge=0.0, description="one notification per station and species (or kind) within "
                                  "this, by event time")
    max_per_hour: int = Field(60, ge=1, description="at most this many an hour of event time")
    targets: list[str] = Field(
        default_factory=lambda: ["mqtt"],
        description="'mqtt' (notify.mqtt_*), or Apprise URLs (mailto://, ntfy://, slack://, "
                    "tgram://, json://...)")


class NotifySettings(BaseModel):
    """The notifier (`soundscape notify run`): rules, MQTT, where links point."""

    rules: list[NotifyRule] = Field(default_factory=list, description="none: nothing is sent")
    group_id: str = Field("soundscape-notify", min_length=1, description="Kafka consumer group")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_topic: str = Field("birdnet", description="detections are published here (BirdNET-Go's "
                                                   "default); other events under TOPIC/events")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    web_url: str | None = Field(None, description="the web app's address, for links in messages")
    silent_check_s: float = Field(60.0, gt=0, description="how often silence is checked")
    retry_max_s: float = Field(300.0, gt=0, description="longest wait between delivery retries")


class StationSettings(BaseModel):
    """A field station (`soundscape station`): capture, spool, forward, heartbeat."""

    station_id: str | None = Field(
        None, description="[a-z0-9-]{1,64}; required to run a station (or --station)"
    )
    source: str = Field("mic", description="mic, synthetic, or a file / folder of recordings")
    device: str | None = Field(None, description="PortAudio input device; default input if unset")
    capture_rate: int = Field(
        0, ge=0, le=384_000, description="device rate; 0 tries 32 kHz, then 48, then 44.1"
    )
    codec: Literal["flac", "wav"] = "flac"
    signing_key: SecretStr | None = Field(
        None, description="base64 Ed25519 key the station signs its chunks with (in the "
                          "bundle `stations add` writes); unsigned if unset")
    data_dir: Path | None = Field(
        None, description="spool/ and state.json; <state_dir>/station/<id> if unset"
    )
    spool_max_mb: int = Field(2048, ge=1, description="oldest chunks are evicted beyond this")
    heartbeat_interval_s: float = Field(60.0, gt=0)
    max_in_flight: int = Field(16, ge=1, le=1000, description="chunks handed to Kafka at once")
    retry_backoff_max_s: float = Field(30.0, gt=0, description="longest reconnect backoff")
    clock_step_ms: int = Field(
        1000, ge=10, description="sample clock behind wall clock by more: recorded as a gap"
    )
    edge_bundle: Path | None = Field(
        None, description="a bundle folder (normally an int8 variant) the station scores its "
        "own chunks with, on a thread of its own, publishing edge results to "
        "topics.edge_detections; unset: no scoring on the station")
    edge_threads: int = Field(
        1, ge=1, le=64, description="CPU threads of edge scoring (ONNX Runtime and the "
        "front-end); one leaves a Pi's other cores to capture")
    edge_outbox_max: int = Field(
        100_000, ge=1, description="edge results kept on disk until Kafka acks them (a "
        "station restarted during an outage sends them then); beyond this the oldest are "
        "dropped and counted. 100,000 is 11 days of chunks, about 200 MB")
    send_audio: bool = Field(
        True, description="false: a low-bandwidth station sends its edge results and "
        "heartbeats only; its audio stays in the spool (the newest spool_max_mb), sent by a "
        "later start with send_audio true. Needs edge_bundle")


class ReplaySettings(BaseModel):
    """Archive replay (`soundscape replay`): how files become chunks."""

    signing_key: SecretStr | None = Field(
        None, description="base64 Ed25519 key replays sign with (`soundscape keys archive`); "
                          "unsigned if unset")
    archive_name: str = Field("archive", pattern=r"^[a-z0-9-]{1,64}$",
                              description="the signer's name: archive:<archive_name>")

    speed: float = Field(0.0, ge=0, description="0: as fast as possible; N: N x real time")
    min_remainder_s: float = Field(
        2.0, ge=0, le=10, description="shorter tails are dropped, longer ones padded"
    )
    join_tolerance_s: float = Field(
        1.0, ge=0, description="files of a station this close are one continuous recording"
    )
    timezone: str = Field("UTC", description="zone of times in file names without one")
    checkpoint_dir: Path | None = Field(None, description="<state_dir>/replay if unset")


class ImageSettings(BaseModel):
    """Container images for docker-compose and the testcontainers test backend."""

    pull: Literal["auto", "never"] = Field(
        "auto", description="auto: try the registry first, build locally if unreachable"
    )
    debian_suite: str = "bookworm"
    debian_mirror: str | None = Field(None, description="debootstrap mirror; apt's if unset")
    base_tag: str = "local/debian:bookworm"
    postgres_tag: str = "local/soundscape-postgres:15"
    kafka_tag: str = f"local/soundscape-kafka:{DEFAULT_KAFKA_VERSION}"
    project_tag: str = "local/soundscape:latest"
class IntakeSettings(BaseModel):
    """What every reader of station data (worker, sink, drift checks) accepts as plausible:
    a chunk from before a network existed or from next year is a broken clock or a forgery,
    and storing it would make PostgreSQL create partitions at a producer's will."""

    earliest: datetime = Field(
        datetime(2000, 1, 1, tzinfo=timezone.utc),
        description="times before this are dead-lettered implausible_time",
    )
    max_future_s: float = Field(
        86_400.0, ge=0, description="times further ahead of this host's clock are refused"
    )
    signatures: Literal["off", "registered", "require"] = Field(
        "registered",
        description="chunk signatures the worker checks: registered = a station with a "
                    "registered key must sign with it; require = every chunk must be signed "
                    "by a registered key; off = none checked")
    keys_ttl_s: float = Field(30.0, gt=0, le=86_400,
                              description="how long a worker keeps the registered keys it read")

    @field_validator("earliest")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class FrontendSettings(BaseModel):
    """The audio front-end (models/frontend): which chunks it repairs, which it refuses."""

    length_tolerance_ms: float = Field(
        50.0, ge=0, le=1000, description="Chunks this close to 10 s are padded or trimmed"
    )
    max_nonfinite_fraction: float = Field(
        0.01, ge=0, le=1, description="Up to this share of NaN/Inf samples is zeroed"
    )
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime CPU threads; 0: one per core")
    frontend_path: Literal["auto", "fft", "graph"] = Field(
        "auto",
        description="how FusionModel computes a bundle's front-end: fft runs the same steps "
        "on scipy's real FFT (soundscape/frontend_fft.py, several times faster on a CPU), "
        "graph runs frontend.onnx (its DFTs are MatMuls, right for a GPU); auto: fft on the "
        "CPU provider, graph on CUDA. fft applies only to the front-end this project builds "
        "(any other frontend.onnx always runs as its graph)",
    )


class ModelSettings(BaseModel):
    """How `FusionModel` runs a bundle (soundscape/fusion.py)."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when onnxruntime-gpu sees a GPU, else CPU"
    )
    device_id: int = Field(0, ge=0, description="CUDA device ordinal")
    max_batch: int = Field(256, ge=1, le=4096, description="Largest batch one run scores")
    intra_op_threads: int = Field(0, ge=0, le=256, description="0: onnxruntime's default")
    lanes: int = Field(
        0, ge=0, le=64,
        description="lanes a batch is split across, each scoring its share on its own thread "
        "(0: 2 on a CPU with 2 or more cores and intra_op_threads 0, else 1; with several, "
        "intra_op_threads 0 gives each lane cores / lanes threads)")
    store_dir: Path | None = Field(
        None, description="where `models register` keeps bundles by content hash (a path "
        "every worker can read); <state_dir>/model-store if unset")


class DriftSettings(BaseModel):
    """Drift checks (`soundscape drift run` and `drift check`): windows, reference, thresholds.

    Windows are aligned to multiples of `hop_s` in event time (chunk_start); `window_s`
    equal to `hop_s` gives tumbling windows, a multiple of it hopping windows. Each check
    alerts when its value passes its threshold (docs/how-to/drift-checks.md).
    """

    app_id: str = Field(
        "soundscape-drift", min_length=1,
        description="faust app id: the Kafka consumer group and prefix of its state topics",
    )
    window_s: int = Field(3600, ge=60, description="window length; a multiple of hop_s")
    hop_s: int = Field(3600, ge=10, description="window step; equal to window_s: tumbling")
    grace_s: int = Field(60, ge=0, description="lateness allowed before a window is closed")
    reference: Literal["previous", "baseline"] = Field(
        "previous", description="compare with the previous windows or a pinned baseline period"
    )
    reference_windows: int = Field(
        24, ge=1, le=1000, description="previous: how many window lengths before the window"
    )
    baseline_start: datetime | None = Field(None, description="baseline: start of the period")
    baseline_end: datetime | None = Field(None, description="baseline: end of the period")
    min_chunks: int = Field(
        30, ge=1, description="fewer chunks in a window or its reference: no input/prediction checks"
    )
    top_labels: int = Field(
        10, ge=1, le=1000, description="labels compared by name; the rest are pooled as 'other'"
    )
    alpha: float = Field(
        0.001, gt=0, lt=1, description="significance a distribution change must reach too"
    )
    level_db: float = Field(6.0, gt=0, description="alert: median RMS level moved by more (dB)")
    noise_floor_db: float = Field(6.0, gt=0, description="alert: median noise floor moved (dB)")
    clipping_increase: float = Field(
        0.001, gt=0, le=1, description="alert: mean clipped share of samples rose by more"
    )
    silence_change: float = Field(
        0.2, gt=0, le=1, description="alert: mean silent share of frames moved by more"
    )
    centroid_change: float = Field(
        0.25, gt=0, description="alert: median spectral centroid moved by more (relative)"
    )
    label_js: float = Field(
        0.1, gt=0, le=1, description="alert: Jensen-Shannon divergence of top labels (bits)"
    )
    label_psi: float = Field(0.25, gt=0, description="alert: PSI of top labels")
    confidence_ks: float = Field(
        0.2, gt=0, le=1, description="alert: Kolmogorov-Smirnov D of top confidences"
    )
    gap_ratio: float = Field(0.05, gt=0, le=1, description="alert: share of chunks missing")
    silent_after_s: int = Field(900, ge=10, description="alert: no chunk from a station this long")
    silence_check_interval_s: float = Field(
        30.0, gt=0, description="how often the stream looks for silent stations"
    )
    data_dir: Path | None = Field(
        None, description="faust state (RocksDB tables); <state_dir>/drift if unset"
    )
    replication_factor: int = Field(
        1, ge=1, le=10, description="replication of the app's changelog topics"
    )

    @field_validator("baseline_start", "baseline_end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Times without a zone are UTC, like every time on the wire."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DriftSettings:
        if self.window_s % self.hop_s or self.hop_s % 10:
            raise ValueError(
                f"window_s={self.window_s} and hop_s={self.hop_s} do not fit: hop_s must be "
                "a multiple of 10 and window_s a multiple of hop_s"
            )
        if self.reference == "baseline" and not (
            self.baseline_start and self.baseline_end and self.baseline_start < self.baseline_end
        ):
            raise ValueError(
                "reference=baseline needs baseline_start before baseline_end (ISO times)"
            )
        return self


class GrafanaSettings(BaseModel):
    """`soundscape grafana push`: where Grafana is and how it reaches the database."""

    url: str | None = Field(None, description="Grafana's base URL, e.g. http://grafana:3000")
    token: SecretStr | None = Field(None, description="service account token (Editor or Admin)")
    folder: str = Field("Soundscape", min_length=1, description="folder of the dashboards")
    postgres_address: str | None = Field(
        None, description="host:port of PostgreSQL as Grafana sees it; the reader URL's if unset"
    )
    prometheus_url: str | None = Field(
        None, description="Prometheus scraping the services; its datasource is pushed if set"
    )
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of each call")


class SecuritySettings(BaseModel):
    profile: Literal["single-host", "remote-stations"] = Field(
        "single-host",
        description="single-host: the local broker keeps an anonymous PLAINTEXT listener on "
                    "loopback for this machine's services; remote-stations: no anonymous "
                    "listener at all, the local services are principals with their role's "
                    "rights and the operator's commands use a password kept 0600")
    deployment: str = Field("soundscape", min_length=1, max_length=64,
                            description="name in the certificate authority's subject")
    server_names: list[str] = Field(
        default_factory=list,
        description="extra host names and addresses the servers' certificate covers "
                    "(loopback and the configured hosts always are)")


class Settings(BaseSettings):
    """Everything configurable, in one place; `soundscape config show` prints it."""

    model_config = SettingsConfigDict(
        env_prefix="SOUNDSCAPE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    metrics_port: int = Field(0, ge=0, le=65535, description="0 disables the HTTP endpoint")
    metrics_host: str = Field("127.0.0.1", description="0.0.0.0 to let a remote Prometheus scrape")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    postgres: PostgresSettings = PostgresSettings()
    worker: WorkerSettings = WorkerSettings()
    sink: SinkSettings = SinkSettings()
    clips: ClipSettings = ClipSettings()
    web: WebSettings = WebSettings()
    notify: NotifySettings = NotifySettings()
    models: ModelSettings = ModelSettings()
    station: StationSettings = StationSettings()
    replay: ReplaySettings = ReplaySettings()
    images: ImageSettings = ImageSettings()
    frontend: FrontendSettings = FrontendSettings()
    intake: IntakeSettings = IntakeSettings()
    drift: DriftSettings = DriftSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    security: SecuritySettings = SecuritySettings()

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @cached_property
    def cache_dir(self) -> Path:
        """Downloaded artefacts (Kafka's jars) live apart from data, so resets keep them."""
        override = os.environ.get("SOUNDSCAPE_CACHE_DIR")
        return Path(override).absolute() if override else self.state_dir / "cache"

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets shown as '***'."""
        data = self.model_dump(mode="json")
        _mask(data, self)
        data["cache_dir"] = str(self.cache_dir)
        data["config_file"] = str(config_file_path()) if config_file_path() else None
        return data


def _mask(data: dict[str, Any], model: BaseModel) -> None:
    for name, value in list(data.items()):
        attr = getattr(model, name, None)
        if isinstance(attr, SecretStr):
            data[name] = "***" if attr.get_secret_value() else ""
        elif isinstance(attr, BaseModel) and isinstance(value, dict):
            _mask(value, attr)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SOUNDSCAPE_* variables (secrets in clear), so that a service
    started as a child process gets exactly these settings."""
    env: dict[str, str] = {}

    def text(value: Any) -> str:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return value.isoformat() if isinstance(value, datetime) else str(value)

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{name.upper()}__")
            elif value is not None:
                env[f"{prefix}{name.upper()}"] = text(value)

    walk(settings, "SOUNDSCAPE_")
    return env


def config_file_path() -> Path | None:
    explicit = os.environ.get("SOUNDSCAPE_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            from soundscape.errors import UserError

            raise UserError(
                f"SOUNDSCAPE_CONFIG names {path}, which is not a file",
                hint="point it at a TOML file or unset it",
            )
        return path
    local = Path("soundscape.toml")
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable UserError."""
    from pydantic import ValidationError

    from soundscape.errors import UserError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            env = "SOUNDSCAPE_" + "__".join(str(p).upper() for p in err["loc"])
            lines.append(f"  {where} (env {env}): {err['msg']}")
        raise UserError(
            "invalid configuration:\n" + "\n".join(lines),
            hint="fix the environment variable or the TOML file (soundscape config show)",
        ) from None
