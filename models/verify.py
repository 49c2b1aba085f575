"""`soundscape models verify`: everything a worker checks at load, plus one scored batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soundscape.bundle import BundleError, load_bundle
from soundscape.fusion import FusionModel
from soundscape.models.samples import random_input
from soundscape.settings import Settings


def verify_bundle(path: Path, settings: Settings, items: int = 2) -> dict[str, Any]:
    """Load BUNDLE as a worker would (hashes, labels, graph IO), score `items` random
    items through it, and describe it; BundleError on any failure."""
    bundle = load_bundle(path)
    model = FusionModel.from_settings(settings, bundle)
    rng = np.random.default_rng(0)
    if model.has_frontend:
        (name, shape), = model.input_shapes(audio=True).items()
        result = model.score_audio(random_input(name, (items, *shape), rng))
    else:
        result = model.score({name: random_input(name, (items, *shape), rng)
                              for name, shape in model.input_shapes().items()})
    probabilities = result.probabilities
    if result.errors or not ((probabilities >= 0) & (probabilities <= 1)).all():
        raise BundleError(f"{bundle.root}: scoring random inputs gave no probabilities "
                          f"({result.errors or 'values outside [0, 1]'})")
    manifest = bundle.manifest
    return {
        "path": str(bundle.root),
        "version": manifest.version,
        "precision": manifest.precision,
        "num_classes": manifest.num_classes,
        "device": model.device,
        "has_frontend": bundle.has_frontend,
        "features": manifest.features.model_dump(),
        "graphs_mb": {role: size / 1e6 for role, size in bundle.sizes().items()},
        "agreement_with_fp32": (manifest.agreement_with_fp32.model_dump()
                                if manifest.agreement_with_fp32 else None),
        "timings_s": {**result.timings, "whole_call": result.seconds},
    }
