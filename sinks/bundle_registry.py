"""The registered model bundles, in the results database's `models` table.

`soundscape models register BUNDLE` vouches for a bundle version (its manifest's hashes,
labels and parameters, and where its files are); the sink stores results of registered
versions only and dead-letters the rest (`sink.bundles`). A hand-written or
misconfigured producer's results therefore never reach the tables, and cannot take a
chunk's place ahead of the real result (the sink keeps the first result per chunk).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from soundscape.errors import UserError
from soundscape.settings import Settings
from soundscape.sinks.connection import connect_to_table

#: The dead-letter reason of a result whose bundle version is not registered.
UNREGISTERED_BUNDLE = "unregistered_bundle"


@dataclass(frozen=True)
class BundleRecord:
    """What the registry keeps of a bundle (from its manifest)."""

    version: str
    hashes: dict[str, Any]
    labels: list[str]
    parameters: dict[str, Any]
    location: str


def register_bundle(settings: Settings, record: BundleRecord, schema: str | None = None) -> bool:
    """Register (or re-register) a version; True if it was not registered before.

    A version is a name for one set of weights: registering the same version with other
    hashes is refused, since results already stored under it would then mean two models.
    """
    with _registry(settings, schema) as conn, conn.transaction():
        row = conn.execute("SELECT hashes, registered_at FROM models WHERE bundle_version = %s "
                           "FOR UPDATE", (record.version,)).fetchone()
        if row is not None and row[0] and row[0] != record.hashes:
            raise UserError(
                f"bundle version {record.version} is registered with other files",
                hint="a retrained or re-exported bundle needs a version of its own "
                     "(models export --version, or the default content-derived one)")
        conn.execute(
            "INSERT INTO models (bundle_version, hashes, labels, parameters, location, "
            "registered_at) VALUES (%s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (bundle_version) DO UPDATE SET hashes = EXCLUDED.hashes, "
            "labels = EXCLUDED.labels, parameters = EXCLUDED.parameters, "
            "location = EXCLUDED.location, "
            "registered_at = coalesce(models.registered_at, EXCLUDED.registered_at)",
            (record.version, Jsonb(record.hashes), Jsonb(record.labels),
             Jsonb(record.parameters), record.location))
        return row is None or row[1] is None


def registered_among(conn: psycopg.Connection[Any], versions: Iterable[str]) -> set[str]:
    """Those of `versions` that are registered."""
    wanted = sorted(set(versions))
    if not wanted:
        return set()
    rows = conn.execute("SELECT bundle_version FROM models WHERE bundle_version = ANY(%s) "
                        "AND registered_at IS NOT NULL", (wanted,)).fetchall()
    return {row[0] for row in rows}


def list_bundles(settings: Settings) -> list[dict[str, Any]]:
    with _registry(settings) as conn:
        rows = conn.execute(
            "SELECT bundle_version, registered_at, first_used, last_used, location, "
            "jsonb_array_length(coalesce(labels, '[]'::jsonb)) FROM models "
            "ORDER BY registered_at NULLS LAST, bundle_version").fetchall()
    return [{"version": r[0], "registered_at": r[1], "first_used": r[2], "last_used": r[3],
             "location": r[4], "labels": r[5]} for r in rows]


def _registry(settings: Settings, schema: str | None = None
              ) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
    return connect_to_table(settings, "bundle registry", schema=schema,
                            application_name="soundscape-registry")
