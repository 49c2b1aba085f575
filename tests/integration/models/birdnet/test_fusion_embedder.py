"""A fusion bundle whose embedder is BirdNET's embedding (audio at 48 kHz in 3 s windows,
mean-pooled): the contract accepts it, FusionModel feeds it real audio, and a head
trained on those embeddings separates synthetic species. The demo bundle is unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from soundscape.bundle import load_bundle
from soundscape.fusion import FusionModel
from soundscape.models import DEMO_BUNDLE
from soundscape.models.birdnet.fusion_embedder import linear_head, with_audio_embedder
from soundscape.synthetic import SPECIES_NAMES, soundscape_chunks
from soundscape.windowed import WindowedModel


def _chunks(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    made = list(soundscape_chunks(count, seed=seed, max_species=1))
    return (np.stack([c.audio for c in made]).astype(np.float32),
            np.stack([c.multi_hot() for c in made]))


@pytest.fixture(scope="module")
def embedded_bundle(birdnet_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bundle with BirdNET's embedding as embedder and a ridge-regression head
    fitted on the embeddings of 96 labelled synthetic chunks."""
    birdnet = WindowedModel(birdnet_bundle, device="cpu")
    audio, labels = _chunks(96, seed=11)
    at_48k = np.stack([soxr.resample(a, 32_000, 48_000, quality="HQ") for a in audio])
    # One scoring per batch of 16 (scoring inside the per-chunk loop did each 16 times).
    scored = [birdnet.score_chunks(at_48k[i:i + 16].astype(np.float32))
              for i in range(0, 96, 16)]
    embeddings = np.stack([batch.embeddings[j] for batch in scored
                           for j in range(len(batch.embeddings))])
    targets = labels * 8.0 - 4.0  # logits that sigmoid to ~0.98 / ~0.02
    mean = embeddings.mean(axis=0)
    centred = embeddings - mean
    weights = np.linalg.solve(centred.T @ centred + 1.0 * np.eye(centred.shape[1]),
                              centred.T @ targets)
    bias = targets.mean(axis=0) - mean @ weights
    out = tmp_path_factory.mktemp("fusion") / "demo-birdnet-embedder"
    return with_audio_embedder(DEMO_BUNDLE, birdnet_bundle, out, linear_head(weights, bias))


def test_the_contract_accepts_an_audio_embedder(embedded_bundle: Path, birdnet_bundle: Path) -> None:
    bundle = load_bundle(embedded_bundle)
    assert bundle.manifest.audio_embedder is not None
    assert bundle.manifest.audio_embedder.sample_rate == 48_000
    assert bundle.manifest.graphs["embed_classifier"].inputs[0].shape == ["batch", 1024]
    assert bundle.manifest.model_extra["licence"]["name"] == "CC BY-NC-SA 4.0"


def test_fusion_feeds_the_embedder_real_audio_and_pools_its_windows(
        embedded_bundle: Path, birdnet_bundle: Path) -> None:
    model = FusionModel(embedded_bundle, device="cpu")
    audio, _ = _chunks(4, seed=12)
    result = model.score_audio(audio)
    assert not result.errors and np.isfinite(result.probabilities).all()
    assert result.timings["embedder"] > 0
    # The embedding FusionModel computes is the windowed runtime's, for the same audio.
    mine = model._embed_audio(audio)
    birdnet = WindowedModel(birdnet_bundle, device="cpu")
    theirs = birdnet.score_chunks(np.stack([soxr.resample(a, 32_000, 48_000, quality="HQ")
                                            for a in audio]).astype(np.float32))
    assert np.allclose(mine, np.stack([theirs.embeddings[i] for i in range(4)]), atol=1e-5)
    with pytest.raises(ValueError, match="reads audio"):
        model.score({"waveform": audio, "mel": np.zeros((4, 1, 64, 313), np.float32),
                     "mel_aug": np.zeros((4, 1, 64, 313), np.float32)})


def test_a_head_on_birdnet_embeddings_separates_the_synthetic_species(
        embedded_bundle: Path) -> None:
    """The embed_classifier branch alone, on held-out chunks: real features carry the
    species (the meta model was trained on the old branch, so it is not judged here)."""
    model = FusionModel(embedded_bundle, device="cpu")
    audio, labels = _chunks(48, seed=13)
    embeddings = model._embed_audio(audio)
    session = model._graphs["embed_classifier"].session
    (logits,) = session.run(["logits"], {"embedding": embeddings.astype(np.float32)})
    hits = (logits.argmax(axis=1) == labels.argmax(axis=1))[labels.sum(axis=1) == 1]
    assert hits.mean() >= 0.6, f"{hits.mean():.2f} of {len(hits)} top-1 on {len(SPECIES_NAMES)} species"


def test_the_demo_bundle_keeps_its_mel_embedder() -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    assert bundle.manifest.audio_embedder is None
    assert bundle.manifest.graphs["embedder"].inputs[0].name == "mel"
