"""The bundle store: registered bundles copied by content hash, checked, never half-made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from soundscape.bundle import MANIFEST, BundleError, load_bundle
from soundscape.bundle_store import content_hash, store_bundle
from soundscape.models import DEMO_BUNDLE


def test_a_bundle_is_stored_once_under_its_content_hash(tmp_path: Path) -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    stored = store_bundle(bundle, tmp_path / "store")
    assert stored == tmp_path / "store" / content_hash(bundle)
    assert load_bundle(stored).version == bundle.version
    assert store_bundle(bundle, tmp_path / "store") == stored  # again: the same copy
    assert store_bundle(load_bundle(stored), tmp_path / "store") == stored  # from the store
    assert [p.name for p in (tmp_path / "store").iterdir()] == [stored.name]  # no leftovers


def test_another_manifest_is_another_entry(tmp_path: Path) -> None:
    copy = tmp_path / "retuned"
    shutil.copytree(DEMO_BUNDLE, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["version"] = "retuned-1"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    first = store_bundle(load_bundle(DEMO_BUNDLE), tmp_path / "store")
    second = store_bundle(load_bundle(copy), tmp_path / "store")
    assert first != second and load_bundle(second).version == "retuned-1"


def test_a_rotten_stored_copy_is_replaced_from_the_good_source(tmp_path: Path) -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    stored = store_bundle(bundle, tmp_path / "store")
    (stored / "meta.onnx").write_bytes(b"rot")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(stored)
    assert store_bundle(bundle, tmp_path / "store") == stored
    assert load_bundle(stored).version == bundle.version
