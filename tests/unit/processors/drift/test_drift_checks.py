"""Each check alerts on the change it is for, and not on sampling noise."""

from __future__ import annotations

import pytest
from drift_observations import NEW_MIX, observations

from soundscape.processors.drift import checks
from soundscape.processors.drift.summary import CHUNK_NS, NS, Summary
from soundscape.settings import DriftSettings

DRIFT = DriftSettings()
T0 = 1_780_000_000 * NS
REF = {"mode": "previous"}


def summary(count: int, seed: int, **kwargs: object) -> Summary:
    return Summary.of(observations("s", T0, count, seed, **kwargs))  # type: ignore[arg-type]


def by_check(window: Summary, reference: Summary) -> dict[str, checks.CheckOutcome]:
    return {o.check: o for o in checks.compare(window, reference, REF, DRIFT)}


@pytest.mark.parametrize("window_size", [60, 360])
def test_same_distribution_raises_nothing(window_size: int) -> None:
    outcomes = by_check(summary(window_size, 1), summary(2160, 2))
    assert set(outcomes) == {"level", "noise_floor", "spectral_centroid", "clipping", "silence",
                             "label_js", "label_psi", "confidence_ks"}
    assert not [o.check for o in outcomes.values() if o.alert]


def test_noise_floor_rising_20_db_alerts_noise_floor_and_level() -> None:
    outcomes = by_check(summary(360, 1, noise_floor=-32.0), summary(2160, 2))
    assert outcomes["noise_floor"].alert and outcomes["noise_floor"].value == pytest.approx(20, abs=1)
    assert outcomes["level"].alert
    assert not outcomes["label_js"].alert
    assert outcomes["noise_floor"].reference["mode"] == "previous"
    assert outcomes["noise_floor"].reference["p_value"] < 1e-6


def test_a_small_level_change_stays_below_its_threshold() -> None:
    outcomes = by_check(summary(360, 1, noise_floor=-49.0), summary(2160, 2))
    assert not outcomes["noise_floor"].alert and 2 < outcomes["noise_floor"].value < 4


def test_species_mix_change_alerts_js_and_psi() -> None:
    outcomes = by_check(summary(360, 1, mix=NEW_MIX), summary(2160, 2))
    assert outcomes["label_js"].alert and outcomes["label_js"].value > 0.2
    assert outcomes["label_psi"].alert
    assert float(outcomes["label_js"].reference["p_value"]) < DRIFT.alpha
    assert not outcomes["noise_floor"].alert
    assert "crow" in outcomes["label_js"].detail or "owl" in outcomes["label_js"].detail


def test_a_large_but_insignificant_label_difference_does_not_alert() -> None:
    # Five chunks against five: JS can be large by chance alone.
    window, reference = summary(5, 1), summary(5, 9)
    outcome = next(o for o in checks.prediction_checks(window, reference, REF, DRIFT)
                   if o.check == "label_js")
    assert not outcome.alert


def test_confidence_drop_alerts_ks() -> None:
    outcomes = by_check(summary(360, 1, confidence=(2.0, 5.0)), summary(2160, 2))
    assert outcomes["confidence_ks"].alert and outcomes["confidence_ks"].value > 0.4


def test_clipping_silence_and_centroid_changes_alert_their_checks() -> None:
    reference = summary(2160, 2)
    assert by_check(summary(360, 1, clipping=0.01), reference)["clipping"].alert
    assert by_check(summary(360, 1, silence=0.6), reference)["silence"].alert
    centroid = by_check(summary(360, 1, centroid=1200.0), reference)["spectral_centroid"]
    assert centroid.alert and centroid.value == pytest.approx(-0.52, abs=0.06)


def test_a_silence_share_that_swings_from_chunk_to_chunk_alerts_only_when_significant() -> None:
    """Rain or wind stopping for a chunk makes a station's silent share swing; a few such
    chunks move a small window's mean past the threshold without any change in the site."""
    from dataclasses import replace

    def swinging(count: int, seed: int, silent_every: int) -> Summary:
        return Summary.of(replace(o, silence_ratio=0.9 if i % silent_every == 0 else 0.0)
                          for i, o in enumerate(observations("s", T0, count, seed)))

    small = by_check(swinging(6, 1, 2), swinging(12, 2, 4))["silence"]
    assert small.value > DRIFT.silence_change and not small.alert
    assert small.reference["p_value"] > DRIFT.alpha
    large = by_check(swinging(360, 1, 2), swinging(2160, 2, 4))["silence"]
    assert large.value > DRIFT.silence_change and large.alert


def test_labels_beyond_the_top_are_pooled() -> None:
    window, reference = summary(360, 1), summary(2160, 2)
    top = checks.label_categories(window, reference, 3)
    assert len(top) == 3
    counts = checks.label_counts(window, top)
    assert counts.sum() == 360 and len(counts) == 4


def test_gaps_count_from_the_window_start_or_first_chunk() -> None:
    window = 600 * NS
    outcome = checks.gap_check(54, T0, T0 + window, T0, DRIFT)
    assert outcome.value == pytest.approx(0.1) and outcome.alert
    assert outcome.reference == {"expected_chunks": 60, "received_chunks": 54}
    # A station that started 5 min into the window is expected for 30 chunks only.
    late_start = checks.gap_check(30, T0, T0 + window, T0 + 300 * NS + 3 * NS, DRIFT)
    assert late_start.value == 0 and not late_start.alert
    assert checks.expected_chunks(T0, T0 + window, T0 - 5 * CHUNK_NS) == 60


def test_silence_alerts_after_its_threshold_only() -> None:
    assert checks.silence_check(T0, T0 + 899 * NS, DRIFT) is None
    outcome = checks.silence_check(T0, T0 + 1800 * NS, DRIFT)
    assert outcome is not None and outcome.alert and outcome.value == 1800.0
