"""Prometheus metrics of the sink, served on /metrics (soundscape.observability)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "soundscape_sink_messages_total",
    "Result messages the sink finished with, by outcome "
    "(stored, duplicate, expired, dead_lettered)",
    ["outcome"],
)
ROWS = Counter("soundscape_sink_rows_inserted_total", "Rows inserted, by table", ["table"])
BATCH_SECONDS = Histogram(
    "soundscape_sink_batch_write_seconds",
    "Time to write one batch (COPY, upserts, INSERTs, commit)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_MESSAGES = Histogram(
    "soundscape_sink_batch_messages",
    "Messages per written batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
RESULT_AGE = Histogram(
    "soundscape_sink_result_age_seconds",
    "From a chunk's capture to its result's database commit",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400),
)
DATABASE_UP = Gauge("soundscape_sink_database_up", "1 when the last database operation worked")
PAUSED = Gauge("soundscape_sink_paused", "1 while consumption is paused for a database outage")
RETRIES = Counter("soundscape_sink_database_retries_total", "Batch writes retried after an outage")
COMMITS = Counter(
    "soundscape_sink_offset_commits_total", "Kafka offset commits, by outcome", ["outcome"]
)
PARTITIONS_CREATED = Counter(
    "soundscape_sink_partitions_created_total", "Time partitions created by the sink"
)
LAST_COMMIT = Gauge(
    "soundscape_sink_last_commit_timestamp_seconds", "When offsets were last committed"
)
