"""Prometheus metrics of the clip keeper, served on /metrics (soundscape.observability)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CLIPS = Counter(
    "soundscape_clips_total",
    "Chunks the clip keeper finished with, by outcome "
    "(detection, negative: kept; expired: audio gone from the topic; mismatched: refused)",
    ["outcome"],
)
BYTES_WRITTEN = Counter("soundscape_clips_written_bytes_total", "Bytes of clips written")
EVICTED = Counter("soundscape_clips_evicted_total", "Clips evicted for the disk quota")
LIVE_BYTES = Gauge("soundscape_clips_live_bytes", "Bytes of clips kept and not evicted")
DATABASE_UP = Gauge("soundscape_clips_database_up", "1 when the last database operation worked")
