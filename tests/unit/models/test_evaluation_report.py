"""The figures `models evaluate` reports per bundle (summary), the smoothing comparison and
the HTML page, on hand-made scores: no bundle graphs run here."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soundscape.models.evaluate import Clips, Scored, smoothing_report, summary, worst_curves
from soundscape.models.evaluation_html import write_html

LABELS = ("<script>alert(1)</script>", "a&b", "plain")


def _bundle(precision: str) -> SimpleNamespace:
    return SimpleNamespace(version=f"v-{precision}", labels=LABELS, root=Path("/b") / precision,
                           manifest=SimpleNamespace(precision=precision),
                           thresholds=lambda: np.array([0.5, 0.5, 0.5]))


TARGETS = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
PROBS = np.array([[0.9, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.2], [0.2, 0.4, 0.1],
                  [np.nan, np.nan, np.nan]])


def _scored(precision: str = "fp32") -> Scored:
    return Scored(_bundle(precision), PROBS.copy(), {4: "silent"})  # type: ignore[arg-type]


def test_summary_reports_ap_worst_pairs_and_calibration() -> None:
    figures = summary(_scored(), TARGETS)
    rows = {row["label"]: row for row in figures["per_class"]}
    assert figures["scored"] == 4 and figures["refused"] == {"4": "silent"}
    # label 0: 0.9 (+), 0.3 (+) above 0.2, 0.1: AP 1; at 0.5 found once of twice: F1 2/3
    # label 1: 0.8 (+), 0.6 (-), 0.4 (+): AP 1/2 * 1 + 1/2 * 2/3; tp 1, fp 1, fn 1: F1 1/2
    # label 2: held nowhere, predicted nowhere: no AP, no F1
    assert (rows[LABELS[0]]["ap"], rows[LABELS[0]]["f1"]) == (1.0, pytest.approx(2 / 3))
    assert (rows["a&b"]["ap"], rows["a&b"]["f1"]) == (pytest.approx(5 / 6), 0.5)
    assert rows["plain"]["ap"] is None and rows["plain"]["f1"] is None
    assert figures["macro_ap"] == pytest.approx(11 / 12)
    assert figures["worst"] == ["a&b", LABELS[0]]
    assert figures["confusion_pairs"] == [
        {"true": LABELS[0], "predicted": "a&b", "count": 1, "true_missed": 1}]
    assert sum(b["count"] for b in figures["calibration"]["bins"]) == 12
    assert 0 < figures["calibration"]["ece"] < 1
    json.dumps(figures, allow_nan=False)  # JSON without NaN


def test_smoothing_is_compared_only_where_windows_have_neighbours() -> None:
    scored = [_scored(), _scored("int8")]
    independent = Clips("chunks", 5, lambda _size: iter(()))
    report, smoothed = smoothing_report(scored, TARGETS, independent, True)
    assert not report["measured"] and "no neighbours" in report["why"] and smoothed == []
    assert smoothing_report(scored, TARGETS, independent, False)[0]["measured"] is False
    recordings = Clips("windows", 5, lambda _size: iter(()),
                       sequence=[("one", 0), ("one", 1), ("two", 0), ("two", 1), ("two", 2)])
    report, smoothed = smoothing_report(scored, TARGETS, recordings, True)
    assert report["measured"] and report["groups"] == 2 and report["windows"] == 5
    assert [row["precision"] for row in report["bundles"]] == ["fp32", "int8"]
    fp32 = report["bundles"][0]
    assert fp32["macro_f1"]["without"] == summary(scored[0], TARGETS)["macro_f1"]
    assert fp32["macro_f1"]["with"] == summary(smoothed[0], TARGETS)["macro_f1"]
    # window 1 borrows from window 0 (0.9): (0.5 * 0.3 + 0.25 * 0.9) / 0.75 = 0.5
    assert smoothed[0].probabilities[1, 0] == pytest.approx(0.5)
    assert np.isnan(smoothed[0].probabilities[4]).all()


def test_the_html_page_embeds_its_plots_and_escapes_labels(tmp_path: Path) -> None:
    scored = [_scored(), _scored("int8")]
    recordings = Clips("windows <of> test", 5, lambda _size: iter(()),
                       sequence=[("one", i) for i in range(5)])
    report = {"held_out": recordings.source, "skipped": ["bad <file>.wav: cannot read it"],
              "fp32": summary(scored[0], TARGETS), "variants": []}
    variant = summary(scored[1], TARGETS)
    variant["agreement_with_fp32"] = {"top1": 1.0, "decisions": 1.0}
    variant["macro_f1_minus_fp32"] = 0.0
    report["variants"].append(variant)
    report["smoothing"], smoothed = smoothing_report(scored, TARGETS, recordings, True)
    page, plots = write_html(tmp_path, report, worst_curves(report, scored, smoothed, TARGETS))
    assert set(plots) == {"reliability", "worst_ap", "pr_curves"}
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b" in html and "windows &lt;of&gt; test" in html and "bad &lt;file&gt;" in html
    assert "http" not in html  # self-contained
