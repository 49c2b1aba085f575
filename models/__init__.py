"""The fusion model: branch definitions, export, quantization and the bundled demo model.

`DEMO_BUNDLE` is the fp32 bundle `soundscape models train-demo` trained on the synthetic
species of `soundscape.synthetic` (shipped as package data, so installed wheels have it);
`DEMO_INT8_BUNDLE` is its int8 variant. Workers and the demo load it by that name.
"""

from pathlib import Path

BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
DEMO_BUNDLE = BUNDLES_DIR / "demo"
DEMO_INT8_BUNDLE = BUNDLES_DIR / "demo-int8"
