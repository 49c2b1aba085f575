"""Prometheus metrics of the inference worker (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCHES = Counter("soundscape_worker_batches_total", "Batches committed")
BATCH_SIZE = Histogram("soundscape_worker_batch_size", "Chunks per batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
CHUNKS = Counter("soundscape_worker_chunks_total", "Chunks handled", ["outcome"])
DLQ = Counter("soundscape_worker_dead_letters_total", "Chunks dead-lettered", ["reason"])
ABORTS = Counter("soundscape_worker_aborted_transactions_total", "Transactions aborted")
STAGE = Histogram("soundscape_worker_stage_seconds", "Time per batch in each scoring stage",
                  ["stage"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
END_TO_END = Histogram("soundscape_worker_end_to_end_seconds",
                       "From publish by the station to scored",
                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
LAG = Gauge("soundscape_worker_consumer_lag", "Messages behind the partition's end", ["partition"])
TRANSACTION = Histogram("soundscape_worker_transaction_seconds",
                        "From begin_transaction to committed, per batch",
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
ISOLATIONS = Counter("soundscape_worker_isolations_total",
                     "Batches that failed twice outside Kafka and were split to find the chunk")
REPAIRS = Counter("soundscape_worker_repaired_total",
                  "Frames or samples mended in accepted chunks", ["kind"])
REPAIRED_CHUNKS = Counter("soundscape_worker_repaired_chunks_total",
                          "Accepted chunks that needed mending", ["kind"])
BUNDLE_SWITCHES = Counter("soundscape_worker_bundle_switches_total",
                          "Switches to a newly promoted (or rolled back) bundle between batches")
BUNDLE_LOAD_FAILURES = Counter("soundscape_worker_bundle_load_failures_total",
                               "Promoted bundles this worker could not load (it kept its own)")
BUNDLE = Gauge("soundscape_worker_bundle", "1 for the bundle version this worker scores with",
               ["version"])
