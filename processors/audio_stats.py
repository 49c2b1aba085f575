"""The per-chunk audio statistics live in the core (`soundscape.audio_stats`), where a
station's edge scorer computes them too; this name stays for the worker."""

from soundscape.audio_stats import CLIP_LEVEL, SILENCE_DBFS, audio_stats

__all__ = ["CLIP_LEVEL", "SILENCE_DBFS", "audio_stats"]
