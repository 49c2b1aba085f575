"""Registering bundles: a bundle folder (models room) into the registry (sinks room).

Composed here because neither room may import the other. Callers that start workers
on a bundle of their own (the demo, the round trip, the pipeline benchmark) register it
the same way an operator does with `soundscape models register`.

Registration copies the bundle into the bundle store under its content hash
(soundscape.bundle_store) and records that copy's path, so the version keeps naming
the same files whatever later happens to the folder it came from.
"""

from __future__ import annotations

from pathlib import Path

from soundscape.bundle import Bundle, load_bundle
from soundscape.bundle_store import content_hash, store_bundle, store_dir
from soundscape.settings import Settings
from soundscape.sinks.bundle_registry import BundleRecord, register_bundle


def bundle_record(bundle: Bundle, location: Path | None = None) -> BundleRecord:
    manifest = bundle.manifest
    return BundleRecord(
        version=bundle.version,
        hashes={role: graph.sha256 for role, graph in sorted(manifest.graphs.items())}
        | {"labels": manifest.labels.sha256},
        labels=list(bundle.labels),
        parameters={"kind": manifest.kind, "precision": manifest.precision,
                    "num_classes": manifest.num_classes},
        location=str((location or bundle.root).resolve()),
        content_hash=content_hash(bundle),
    )


def register(settings: Settings, bundle: Bundle | Path | str, *, store: bool = True
             ) -> tuple[BundleRecord, bool]:
    """Register a bundle (checked: its files must match the manifest's hashes first),
    stored by content hash unless `store` is False. Returns its record and whether it is
    newly registered."""
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    location = store_bundle(loaded, store_dir(settings)) if store else None
    record = bundle_record(loaded, location)
    return record, register_bundle(settings, record)
