"""The bundle store: registered bundles copied under their content hash.

A registered version must keep meaning the same files for as long as results name it,
even when the folder it was registered from is retrained, moved or deleted. So
`models register` copies the bundle to `<store>/<content hash>/` (written beside,
checked against its manifest, then renamed into place, so a crash never leaves a
half-copied bundle where a worker would load it) and the registry records that path.
The store may be any folder every worker can read (`models.store_dir`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from soundscape.bundle import MANIFEST, Bundle, BundleError, load_bundle
from soundscape.settings import Settings


def store_dir(settings: Settings) -> Path:
    return settings.models.store_dir or settings.state_dir / "model-store"


def content_hash(bundle: Bundle) -> str:
    """sha256 of the manifest, which names every file's sha256, the version, thresholds
    and parameters: two bundles with the same hash behave the same."""
    return hashlib.sha256((bundle.root / MANIFEST).read_bytes()).hexdigest()


def store_bundle(bundle: Bundle, root: Path) -> Path:
    """The stored copy of `bundle` under `root` (made if missing); returns its folder."""
    digest = content_hash(bundle)
    target = root / digest
    if bundle.root.resolve() == target.resolve():
        return target
    if (target / MANIFEST).is_file():
        try:
            load_bundle(target)  # an existing copy is trusted only if it still checks out
            return target
        except BundleError:
            pass  # rotten (a disk fault, a hand edit): copied again from the good source
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    try:
        copy = staging / "bundle"
        shutil.copytree(bundle.root, copy, symlinks=False)
        load_bundle(copy)
        if target.exists():  # a broken leftover copy: replace it
            shutil.rmtree(target)
        copy.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
