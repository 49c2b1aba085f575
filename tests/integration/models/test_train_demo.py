"""`soundscape models train-demo` end to end at a tiny size (PyTorch, the ONNX exporter and
onnxruntime, as the real run): a verified fp32 bundle with the runtime front-end, the
species labels, tuned thresholds and how it was trained, plus its int8 variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundscape.bundle import load_bundle
from soundscape.models.frontend.graph import build_frontend
from soundscape.synthetic import SPECIES_NAMES


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from click.testing import CliRunner

    from soundscape.app.cli import cli

    out = tmp_path_factory.mktemp("demo") / "tiny"
    result = CliRunner().invoke(cli, ["models", "train-demo", "--out", str(out), "--chunks", "24",
                                      "--epochs", "1", "--seed", "5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_demo_writes_a_complete_bundle_and_its_int8_variant(trained: tuple[Path, str],
                                                                   run_cli) -> None:
    out, output = trained
    fp32, int8 = load_bundle(out), load_bundle(out.with_name("tiny-int8"))
    assert fp32.labels == int8.labels == SPECIES_NAMES
    assert fp32.path("frontend").read_bytes() == build_frontend().SerializeToString()
    assert set(fp32.manifest.thresholds) == set(SPECIES_NAMES)
    training = fp32.manifest.model_extra["origin"]["training"]
    assert (training["seed"], training["chunks"], training["epochs"]) == (5, 24, 1)
    assert sum(training["split"].values()) == 24
    assert set(training["branch_macro_f1"]) == {"embed_classifier", "resnet50",
                                                "effnet_b3_lora", "wave_cnn"}
    assert int8.manifest.precision == "int8"
    assert int8.manifest.agreement_with_fp32.fp32_version == fp32.version
    assert "max |onnx - torch|" in output and "top-1 agreement" in output
    for bundle in (out, out.with_name("tiny-int8")):
        assert json.loads(run_cli("models", "verify", str(bundle), "--json"))["has_frontend"]


def test_evaluate_refuses_the_training_data_set(trained: tuple[Path, str]) -> None:
    from click.testing import CliRunner

    from soundscape.app.cli import cli

    result = CliRunner().invoke(cli, ["models", "evaluate", str(trained[0]), "--seed", "5"])
    assert result.exit_code != 0 and "trained on" in str(result.exception)


def test_train_demo_refuses_an_existing_folder_and_too_few_chunks(trained: tuple[Path, str]) -> None:
    from click.testing import CliRunner

    from soundscape.app.cli import cli

    result = CliRunner().invoke(cli, ["models", "train-demo", "--out", str(trained[0])])
    assert result.exit_code != 0 and "exists" in str(result.exception)
    result = CliRunner().invoke(cli, ["models", "train-demo", "--chunks", "5"])
    assert result.exit_code == 2 and "20<=x" in result.output
