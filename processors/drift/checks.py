"""The drift checks: one window's summary against its reference, gaps, and silence.

Pure functions of summaries and settings; the stream (`soundscape drift run`) and the
batch checks (`soundscape drift check`) both call them through `StationDrift`, so the
two give the same reports for the same chunks. Thresholds are the `drift` settings
(docs/how-to/drift-checks.md); the level, noise floor, centroid, silence, label and confidence
tests also need significance at `alpha`, so that a small window's sampling noise alone
never alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from soundscape.drift_checks import CHECKS as CHECKS  # the names are a contract: core
from soundscape.messages import DriftReport
from soundscape.processors.drift import measures
from soundscape.processors.drift.summary import CHUNK_NS, NS, Summary
from soundscape.settings import DriftSettings

OTHER = "(other)"
ReferenceInfo = dict[str, float | int | str]


@dataclass(frozen=True)
class CheckOutcome:
    check: str
    kind: str  # input, prediction, health
    value: float
    threshold: float
    alert: bool
    reference: ReferenceInfo = field(default_factory=dict)
    detail: str = ""

    def report(self, station_id: str, start: int, end: int, created_at: int) -> DriftReport:
        return DriftReport(
            station_id=station_id, check=self.check, kind=self.kind,  # type: ignore[arg-type]
            window_start=start, window_end=end, value=self.value, threshold=self.threshold,
            alert=self.alert, reference=self.reference, detail=self.detail,
            created_at=created_at,
        )


def compare(window: Summary, reference: Summary, ref: ReferenceInfo,
            drift: DriftSettings) -> list[CheckOutcome]:
    """Input and prediction checks of a window against its reference."""
    return [*input_checks(window, reference, ref, drift),
            *prediction_checks(window, reference, ref, drift)]


def _median_shift(name: str, check: str, unit: str, threshold: float, relative: bool,
                  window: Summary, reference: Summary, ref: ReferenceInfo,
                  alpha: float) -> CheckOutcome | None:
    """Median moved by more than `threshold` (dB, or a share with `relative`), and the
    two histograms differ significantly (KS), so one odd window of a spread-out quantity
    does not alert."""
    now, before = window.median(name), reference.median(name)
    if relative and before <= 0:
        return None
    value = now / before - 1 if relative else now - before
    _, p_value = measures.ks_from_histograms(window.dense(name), reference.dense(name))
    moved = f"{value:+.0%}" if relative else f"{value:+.1f} dB"
    return CheckOutcome(
        check, "input", round(value, 4), threshold, abs(value) > threshold and p_value < alpha,
        ref | {"reference_median": round(before, 3), "window_median": round(now, 3),
               "p_value": p_value},
        f"median {now:.1f} {unit} against {before:.1f} {unit} ({moved})",
    )


def input_checks(window: Summary, reference: Summary, ref: ReferenceInfo,
                 drift: DriftSettings) -> list[CheckOutcome]:
    """Level, noise floor, clipping, silence and spectral centroid against the reference."""
    shifts = [
        _median_shift("rms_dbfs", "level", "dBFS", drift.level_db, False, window, reference,
                      ref, drift.alpha),
        _median_shift("noise_floor_dbfs", "noise_floor", "dBFS", drift.noise_floor_db, False,
                      window, reference, ref, drift.alpha),
        _median_shift("spectral_centroid_hz", "spectral_centroid", "Hz", drift.centroid_change,
                      True, window, reference, ref, drift.alpha),
    ]
    outcomes = [o for o in shifts if o is not None]
    clip_now, clip_before = window.mean("clipping_ratio"), reference.mean("clipping_ratio")
    rise = clip_now - clip_before
    outcomes.append(CheckOutcome(
        "clipping", "input", rise, drift.clipping_increase, rise > drift.clipping_increase,
        ref | {"reference_mean": clip_before, "window_mean": clip_now},
        f"{clip_now:.2%} of samples clipped against {clip_before:.2%}",
    ))
    silent_now, silent_before = window.mean("silence_ratio"), reference.mean("silence_ratio")
    moved = silent_now - silent_before
    p_value = _ks_p_value(window, reference, "silence_ratio")
    outcomes.append(CheckOutcome(
        "silence", "input", moved, drift.silence_change,
        abs(moved) > drift.silence_change and p_value < drift.alpha,
        ref | {"reference_mean": silent_before, "window_mean": silent_now, "p_value": p_value},
        f"{silent_now:.0%} of frames silent against {silent_before:.0%}",
    ))
    return outcomes


def _ks_p_value(window: Summary, reference: Summary, name: str) -> float:
    """KS p-value of a histogrammed quantity; 0 (significant: the threshold alone decides)
    where a summary has no histogram of it (stream state kept before it was added)."""
    now, before = window.dense(name), reference.dense(name)
    if not now.any() or not before.any():
        return 0.0
    return measures.ks_from_histograms(now, before)[1]


def label_categories(window: Summary, reference: Summary, top: int) -> list[str]:
    """The `top` labels most frequent in window and reference together, by name."""
    combined = window.labels + reference.labels
    return [label for label, _ in sorted(combined.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def label_counts(summary: Summary, categories: list[str]) -> np.ndarray:
    kept = [summary.labels.get(label, 0) for label in categories]
    return np.array([*kept, summary.chunks - sum(kept)], dtype=np.float64)


def prediction_checks(window: Summary, reference: Summary, ref: ReferenceInfo,
                      drift: DriftSettings) -> list[CheckOutcome]:
    """Top-label distribution (JS divergence, PSI) and confidence (KS) against the reference."""
    categories = label_categories(window, reference, drift.top_labels)
    now, before = label_counts(window, categories), label_counts(reference, categories)
    p_value = measures.homogeneity_p_value(now, before)
    significant = p_value < drift.alpha
    js = measures.js_divergence(now, before)
    stability = measures.psi(now, before)
    names = [*categories, OTHER]
    share_now, share_before = now / now.sum(), before / before.sum()
    moved = np.argsort(-np.abs(share_now - share_before))[:3]
    detail = ", ".join(f"{names[i]} {share_now[i]:.0%} (was {share_before[i]:.0%})" for i in moved)
    label_ref = ref | {"p_value": p_value, "labels_compared": len(names)}
    d, ks_p = measures.ks_from_histograms(window.dense("confidence"),
                                          reference.dense("confidence"))
    conf_now, conf_before = window.median("confidence"), reference.median("confidence")
    return [
        CheckOutcome("label_js", "prediction", round(js, 5), drift.label_js,
                     js > drift.label_js and significant, label_ref, detail),
        CheckOutcome("label_psi", "prediction", round(stability, 5), drift.label_psi,
                     stability > drift.label_psi and significant, label_ref, detail),
        CheckOutcome(
            "confidence_ks", "prediction", round(d, 5), drift.confidence_ks,
            d > drift.confidence_ks and ks_p < drift.alpha,
            ref | {"p_value": ks_p, "reference_median": round(conf_before, 3),
                   "window_median": round(conf_now, 3)},
            f"median top confidence {conf_now:.2f} against {conf_before:.2f} (D={d:.2f})",
        ),
    ]


def expected_chunks(start: int, end: int, first_seen: int) -> int:
    """Chunks a station sending without a break would have started in [start, end)."""
    since = max(start, first_seen)
    return max(0, math.ceil((end - since) / CHUNK_NS))


def gap_check(received: int, start: int, end: int, first_seen: int,
              drift: DriftSettings) -> CheckOutcome:
    expected = expected_chunks(start, end, first_seen)
    missing = max(0, expected - received)
    ratio = missing / expected if expected else 0.0
    return CheckOutcome(
        "gaps", "health", round(ratio, 5), drift.gap_ratio, ratio > drift.gap_ratio,
        {"expected_chunks": expected, "received_chunks": received},
        f"{missing} of {expected} chunks missing",
    )


def silence_check(last_end: int, now: int, drift: DriftSettings) -> CheckOutcome | None:
    """A station silent since `last_end` for at least `silent_after_s` at time `now`."""
    silent_s = (now - last_end) / NS
    if silent_s < drift.silent_after_s:
        return None
    return CheckOutcome(
        "silent", "health", round(silent_s, 1), float(drift.silent_after_s), True,
        {"last_chunk_end": last_end},
        f"no chunk for {silent_s / 60:.0f} min",
    )
