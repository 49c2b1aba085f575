"""The committed demo bundle (soundscape.models.DEMO_BUNDLE) and its quality gates: it
loads as a worker loads it, and scores held-out synthetic chunks through the runtime path
(score_audio) at macro-F1 >= 0.9, its int8 variant within 0.02 of it. No PyTorch needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from soundscape.bundle import load_bundle
from soundscape.app.cli import cli
from soundscape.fusion import FusionModel
from soundscape.models import DEMO_BUNDLE, DEMO_INT8_BUNDLE
from soundscape.models.frontend.graph import build_frontend
from soundscape.models.labelled import EVAL_SEED
from soundscape.settings import Settings
from soundscape.audio_codec import to_int16
from soundscape.synthetic import SAMPLE_RATE, SPECIES_NAMES, soundscape_chunk, write_chunks

#: Held-out chunks the gate scores: enough for every species to appear ~10 times.
GATE_CHUNKS = 80


def evaluate_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["models", "evaluate", str(DEMO_BUNDLE), *args, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`models evaluate DEMO_BUNDLE` (which finds demo-int8 beside it) as JSON, with a PNG."""
    out = tmp_path_factory.mktemp("evaluation")
    return evaluate_json("--chunks", str(GATE_CHUNKS), "--out", str(out))


def test_the_demo_bundles_load_as_workers_load_them(run_cli) -> None:
    fp32, int8 = load_bundle(DEMO_BUNDLE), load_bundle(DEMO_INT8_BUNDLE)
    assert fp32.labels == int8.labels == SPECIES_NAMES
    assert (fp32.manifest.precision, int8.manifest.precision) == ("fp32", "int8")
    assert int8.manifest.agreement_with_fp32.fp32_version == fp32.version
    assert int8.manifest.agreement_with_fp32.top1 >= 0.9
    # The shipped front-end is the one the project builds today, byte for byte.
    assert fp32.path("frontend").read_bytes() == build_frontend().SerializeToString()
    assert set(fp32.manifest.thresholds) == set(SPECIES_NAMES)
    assert len(set(fp32.manifest.thresholds.values())) > 1, "thresholds were not tuned"
    assert sum(fp32.sizes().values()) < 8e6 and sum(int8.sizes().values()) < 8e6
    for bundle in (DEMO_BUNDLE, DEMO_INT8_BUNDLE):
        assert json.loads(run_cli("models", "verify", str(bundle), "--json"))["has_frontend"]


def test_the_demo_bundle_meets_its_targets(report: dict) -> None:
    fp32 = report["fp32"]
    assert f"data set {EVAL_SEED}" in report["held_out"]
    assert fp32["scored"] == GATE_CHUNKS and not fp32["refused"]
    assert fp32["macro_f1"] >= 0.9, fp32["per_class"]
    (int8,) = report["variants"]
    assert int8["precision"] == "int8" and int8["scored"] == GATE_CHUNKS
    assert abs(int8["macro_f1_minus_fp32"]) <= 0.02
    assert int8["agreement_with_fp32"]["decisions"] >= 0.98


def test_the_report_names_the_worst_labels_and_draws_the_matrix(report: dict) -> None:
    fp32 = report["fp32"]
    by_label = {row["label"]: row for row in fp32["per_class"]}
    assert list(by_label) == list(SPECIES_NAMES)
    worst = [by_label[label]["f1"] for label in fp32["worst"]]
    assert worst == sorted(worst) and max(worst) <= min(
        (row["f1"] for row in fp32["per_class"]
         if row["label"] not in fp32["worst"] and row["f1"] is not None), default=1.0)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (13, 13)
    assert np.trace(matrix[:12, :12]) == sum(
        round(row["recall"] * row["support"]) for row in fp32["per_class"] if row["support"])
    png = Path(report["confusion_png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_recordings_listed_in_a_csv_are_scored_in_10_s_windows(tmp_path: Path) -> None:
    write_chunks(tmp_path / "clips", 3, seed=EVAL_SEED + 1, codec="wav")
    # One 20 s recording (two windows of the same labels) besides the three 10 s clips.
    import soundfile as sf

    first, rate = sf.read(tmp_path / "clips" / "chunk-000000.wav")
    sf.write(tmp_path / "clips" / "long.wav", np.concatenate([first, first]), rate)
    rows = (tmp_path / "clips" / "labels.csv").read_text().splitlines()
    labels = dict(line.split(",")[0::3] for line in rows[1:])  # file -> "a;b"
    csv = tmp_path / "test.csv"
    csv.write_text("file,label\n" + "".join(f"clips/{f},{l}\n" for f, l in labels.items())
                   + f"clips/long.wav,{labels['chunk-000000.wav']}\n")
    report = evaluate_json("--manifest", str(csv))
    assert report["held_out"].startswith("5 windows of 4 recordings")
    assert report["fp32"]["scored"] == 5 and report["variants"][0]["scored"] == 5


#: (species, 10 s windows) of each synthetic recording the smoothing test writes.
RECORDINGS = [(("warbler",), 4), (("low-hoot", "cicada"), 4), (("fast-trill",), 3),
              (("two-note", "high-buzz"), 4), (("slow-trill",), 3)]


def test_recordings_report_ap_calibration_pairs_and_smoothing_as_json_and_html(
        tmp_path: Path) -> None:
    """Longer recordings (consecutive 10 s windows of the same species) through
    `models evaluate --manifest --smooth --out`: every bundle gets AP, calibration,
    confusion pairs and worst labels, smoothing is measured for fp32 and int8, and
    report.html embeds the plots and escapes what it shows."""
    import soundfile as sf

    rows = []
    for number, (species, windows) in enumerate(RECORDINGS):
        audio = np.concatenate([soundscape_chunk(EVAL_SEED + 100 * number + w, species=species,
                                                 snr_db=(-6.0, 12.0)).audio
                                for w in range(windows)])
        sf.write(tmp_path / f"site{number}.wav", to_int16(audio), SAMPLE_RATE, subtype="PCM_16")
        rows += [f"site{number}.wav,{label}\n" for label in species]
    csv = tmp_path / "labels <&> test.csv"
    csv.write_text("file,label\n" + "".join(rows))
    out = tmp_path / "out"
    report = evaluate_json("--manifest", str(csv), "--smooth", "--out", str(out))
    windows = sum(w for _, w in RECORDINGS)
    assert report["held_out"].startswith(f"{windows} windows of {len(RECORDINGS)} recordings")
    (int8,) = report["variants"]
    for figures in (report["fp32"], int8):
        assert figures["scored"] == windows
        assert 0 <= figures["macro_ap"] <= 1
        held = [row for row in figures["per_class"] if row["support"]]
        assert len(held) == 7 and all(0 <= row["ap"] <= 1 for row in held)
        assert all(row["ap"] is None for row in figures["per_class"] if not row["support"])
        assert len(figures["worst"]) == len([r for r in figures["per_class"] if r["f1"] is not None])
        assert all(set(pair) == {"true", "predicted", "count", "true_missed"}
                   for pair in figures["confusion_pairs"])
        bins = figures["calibration"]["bins"]
        assert len(bins) == 10 and sum(b["count"] for b in bins) == windows * len(SPECIES_NAMES)
        assert 0 <= figures["calibration"]["ece"] <= 1
    smoothing = report["smoothing"]
    assert smoothing["measured"] and smoothing["groups"] == len(RECORDINGS)
    assert [b["precision"] for b in smoothing["bundles"]] == ["fp32", "int8"]
    for row, figures in zip(smoothing["bundles"], (report["fp32"], int8), strict=True):
        for key in ("macro_f1", "macro_ap", "ece"):
            assert set(row[key]) == {"without", "with", "change"} and row[key]["with"] is not None
        assert row["macro_f1"]["without"] == pytest.approx(figures["macro_f1"])
        assert row["macro_ap"]["without"] == pytest.approx(figures["macro_ap"])
    print("smoothing:", json.dumps(smoothing["bundles"]))  # the figures docs/ quote
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["smoothing"] == smoothing and on_disk["report_html"] == str(out / "report.html")
    assert {"confusion", "reliability", "worst_ap", "pr_curves"} <= set(on_disk["plots"])
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in on_disk["plots"].values())
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "labels &lt;&amp;&gt; test.csv" in html and "<&>" not in html
    assert "warbler" in html and "macro-AP" in html and "smoothing" in html


def test_score_audio_refuses_bad_chunks_and_scores_the_rest() -> None:
    model = FusionModel.from_settings(Settings(models={"device": "cpu"}), DEMO_BUNDLE)
    silence = np.zeros(320_000, np.float32)
    broken = np.full(320_000, np.nan, np.float32)
    result = model.score_audio([silence, broken, silence[:16_000], silence.astype(np.int16)])
    assert sorted(result.errors) == [1, 2]
    assert np.isfinite(result.probabilities[[0, 3]]).all()
    np.testing.assert_allclose(result.probabilities[0], result.probabilities[3], atol=1e-6)
