"""The HTML page of `models evaluate --out`: one self-contained file a reviewer can open
anywhere (no CSS or JavaScript from elsewhere, plots embedded as base64 PNGs), showing the
same figures as report.json: per-bundle tables, the confusion matrix, a reliability
diagram, the worst labels' average precision and precision-recall curves, confusion pairs
and the with/without-smoothing comparison. Every label and path is HTML-escaped, since
labels come from whoever wrote the bundle's labels file.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

#: (bundle name, precision, recall) curves of one label, the first the fp32 bundle's.
Curves = dict[str, list[tuple[str, np.ndarray, np.ndarray]]]

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; }
"""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def _bundles(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [report["fp32"], *report["variants"]]


def _name(figures: dict[str, Any]) -> str:
    return f"{figures['version']} ({figures['precision']})"


def plot_reliability(report: dict[str, Any], path: Path) -> Path:
    """Observed frequency against mean predicted probability per bin, one line a bundle."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for figures in _bundles(report):
        bins = [b for b in figures["calibration"]["bins"] if b["count"]]
        ece = figures["calibration"]["ece"]
        axes.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], marker="o",
                  label=f"{_name(figures)}, ECE {_fmt(ece)}")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("mean predicted probability (bin)")
    axes.set_ylabel("observed frequency")
    axes.set_title("reliability over every (chunk, label)", fontsize=10)
    axes.legend(fontsize=7, loc="upper left")
    return _save(figure, path)


def plot_worst_ap(report: dict[str, Any], path: Path) -> Path:
    """Average precision of the worst labels, a bar per bundle."""
    plt = _pyplot()
    labels = report["fp32"]["worst"]
    bundles = _bundles(report)
    figure, axes = plt.subplots(figsize=(max(5.0, 0.45 * len(labels) * len(bundles) + 2), 4))
    width = 0.8 / len(bundles)
    for offset, figures in enumerate(bundles):
        by_label = {row["label"]: row["ap"] for row in figures["per_class"]}
        values = [by_label.get(label) or 0.0 for label in labels]
        axes.bar(np.arange(len(labels)) + offset * width, values, width, label=_name(figures))
    axes.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=60, ha="right",
                    fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("average precision")
    axes.set_title("average precision of the worst labels (by F1, then AP)", fontsize=10)
    axes.legend(fontsize=7)
    return _save(figure, path)


def plot_pr_curves(curves: Curves, path: Path) -> Path:
    """Precision against recall for a few labels, one panel each, a line per bundle."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, max(1, len(curves)), figsize=(3.2 * max(1, len(curves)), 3.4),
                                  squeeze=False)
    for axes, (label, lines) in zip(panels[0], curves.items(), strict=False):
        for index, (name, precision, recall) in enumerate(lines):
            axes.step(np.r_[0.0, recall], np.r_[precision[:1], precision], where="post",
                      linestyle="-" if index == 0 else "--", label=name)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.05)
        axes.set_xlabel("recall")
        axes.set_title(label, fontsize=9)
    panels[0][0].set_ylabel("precision")
    if curves:
        panels[0][0].legend(fontsize=6, loc="lower left")
    return _save(figure, path)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _overview(report: dict[str, Any]) -> str:
    rows = []
    for figures in _bundles(report):
        agree = figures.get("agreement_with_fp32")
        rows.append([_name(figures), figures["scored"], len(figures["refused"]),
                     _fmt(figures["macro_f1"]), _fmt(figures["macro_ap"]),
                     _fmt(figures["calibration"]["ece"]),
                     f"{figures['macro_f1_minus_fp32']:+.3f}" if agree else "",
                     f"{agree['top1']:.2%}" if agree else "",
                     f"{agree['decisions']:.2%}" if agree else ""])
    return _table(["bundle", "scored", "refused", "macro-F1", "macro-AP", "ECE",
                   "macro-F1 vs fp32", "top-1 agreement", "same decisions"], rows)


def _smoothing(report: dict[str, Any]) -> str:
    smoothing = report.get("smoothing") or {}
    if not smoothing.get("measured"):
        return f'<p class="note">Not measured: {escape(smoothing.get("why", "not asked for"))}.</p>'
    weights = smoothing["weights"]
    rows = [[f"{b['version']} ({b['precision']})",
             *(_fmt(b[key][side]) for key in ("macro_f1", "macro_ap", "ece")
               for side in ("without", "with"))] for b in smoothing["bundles"]]
    return (f'<p class="note">Each window mixed with its recording\'s previous and next '
            f'windows, weights {weights["previous"]} / {weights["current"]} / '
            f'{weights["next"]} (renormalised at the ends), over {smoothing["windows"]} windows '
            f'of {smoothing["groups"]} recordings; the bundle\'s thresholds unchanged.</p>'
            + _table(["bundle", "macro-F1 without", "macro-F1 with", "macro-AP without",
                      "macro-AP with", "ECE without", "ECE with"], rows))


def _bundle_section(figures: dict[str, Any]) -> str:
    thresholds = figures["thresholds"]
    rows = [[row["label"], _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]),
             _fmt(row["ap"]), row["support"], row["predicted"], _fmt(thresholds[row["label"]], 2)]
            for row in figures["per_class"]]
    pairs = [[p["true"], p["predicted"], p["count"], p["true_missed"]]
             for p in figures["confusion_pairs"]]
    refused = "".join(f"<li>window {escape(i)}: {escape(why)}</li>"
                      for i, why in figures["refused"].items())
    return (f"<h2>{escape(_name(figures))}</h2>"
            f"<p>macro-F1 {_fmt(figures['macro_f1'])}, macro-AP {_fmt(figures['macro_ap'])}, "
            f"ECE {_fmt(figures['calibration']['ece'])}; worst: "
            f"{escape(', '.join(figures['worst']))}</p>"
            + (f"<ul>{refused}</ul>" if refused else "")
            + _table(["label", "precision", "recall", "F1", "AP", "support", "predicted",
                      "threshold"], rows)
            + "<h3>confusion pairs</h3><p class=\"note\">Chunks that hold the true label, not the "
              "predicted one, and were given the predicted one; \"true missed\": the true label "
              "was missed too.</p>"
            + (_table(["true", "predicted", "chunks", "true missed"], pairs) if pairs
               else "<p>none</p>"))


def write_html(out: Path, report: dict[str, Any], curves: Curves) -> tuple[Path, dict[str, str]]:
    """Draw the plots into `out` (PNGs beside the page) and write `out`/report.html from
    `report` (what evaluate() returns) and the worst labels' PR `curves`; (page, plots)."""
    plots = {"reliability": plot_reliability(report, out / "reliability.png"),
             "worst_ap": plot_worst_ap(report, out / "worst_ap.png"),
             "pr_curves": plot_pr_curves(curves, out / "pr_curves.png")}
    if report.get("confusion_png"):
        plots = {"confusion": Path(report["confusion_png"]), **plots}
    fp32 = report["fp32"]
    skipped = "".join(f"<li>{escape(line)}</li>" for line in report["skipped"])
    images = {"confusion": "Confusion matrix (fp32, rows: true labels)",
              "reliability": "Reliability diagram",
              "worst_ap": "Average precision of the worst labels",
              "pr_curves": "Precision-recall curves of the worst labels"}
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Evaluation of {escape(fp32['version'])}</title><style>{_STYLE}</style></head>"
        f"<body><h1>Evaluation of {escape(fp32['version'])}</h1>"
        f"<p>Held out: {escape(report['held_out'])}. Decisions at each bundle's per-label "
        "thresholds; AP and calibration use the probabilities themselves.</p>"
        + (f"<p>Skipped:</p><ul>{skipped}</ul>" if skipped else "")
        + _overview(report)
        + "<h2>neighbour-chunk smoothing</h2>" + _smoothing(report)
        + "".join(f"<h2>{escape(images[key])}</h2>" + _image(path, images[key])
                  for key, path in plots.items())
        + "".join(_bundle_section(figures) for figures in _bundles(report))
        + "</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path, {key: str(value) for key, value in plots.items()}
