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
    content_hash: str | None = None


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
            "content_hash, registered_at) VALUES (%s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (bundle_version) DO UPDATE SET hashes = EXCLUDED.hashes, "
            "labels = EXCLUDED.labels, parameters = EXCLUDED.parameters, "
            "location = EXCLUDED.location, "
            "content_hash = coalesce(EXCLUDED.content_hash, models.content_hash), "
            "registered_at = coalesce(models.registered_at, EXCLUDED.registered_at)",
            (record.version, Jsonb(record.hashes), Jsonb(record.labels),
             Jsonb(record.parameters), record.location, record.content_hash))
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
            "jsonb_array_length(coalesce(labels, '[]'::jsonb)), content_hash, promoted_at, "
            "promoted_by FROM models "
            "ORDER BY registered_at NULLS LAST, bundle_version").fetchall()
        active = _active(conn)
    return [{"version": r[0], "registered_at": r[1], "first_used": r[2], "last_used": r[3],
             "location": r[4], "labels": r[5], "content_hash": r[6], "promoted_at": r[7],
             "promoted_by": r[8], "active": active is not None and r[0] == active.version}
            for r in rows]


# ---- rollout: which registered version is live --------------------------------------------
#: Serialises promotions and rollbacks (pg_advisory_xact_lock key), so two operators
#: acting at once each see the other's change.
_PROMOTION_LOCK = 0x50524F4D  # "PROM"


@dataclass(frozen=True)
class ActiveBundle:
    version: str
    location: str | None
    since: Any  # datetime of the promotion or rollback that made it active
    by: str
    action: str


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    changed: bool  # False: it was already the active version


def active_bundle(settings: Settings) -> ActiveBundle | None:
    """The version workers that follow the registry should run; None before any promote."""
    with _registry(settings) as conn:
        return _active(conn)


def _active(conn: psycopg.Connection[Any]) -> ActiveBundle | None:
    row = conn.execute(
        "SELECT p.bundle_version, m.location, p.at, p.actor, p.action FROM model_promotions p "
        "JOIN models m USING (bundle_version) ORDER BY p.id DESC LIMIT 1").fetchone()
    return None if row is None else ActiveBundle(*row)


def promote(settings: Settings, version: str, actor: str, reason: str | None = None) -> Promotion:
    """Make a registered version the active one."""
    with _registry(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PROMOTION_LOCK,))
        row = conn.execute("SELECT registered_at, location FROM models WHERE bundle_version = %s",
                           (version,)).fetchone()
        if row is None or row[0] is None:
            known = [r[0] for r in conn.execute(
                "SELECT bundle_version FROM models WHERE registered_at IS NOT NULL "
                "ORDER BY registered_at DESC LIMIT 5")]
            raise UserError(f"bundle version {version} is not registered",
                            hint="register it first (`soundscape models register BUNDLE`); "
                                 f"registered: {', '.join(known) or 'none'}")
        if not row[1]:
            raise UserError(f"bundle version {version} has no stored location",
                            hint="register its folder again: `soundscape models register BUNDLE`")
        current = _active(conn)
        if current is not None and current.version == version:
            return Promotion(version, current.version, changed=False)
        _record(conn, version, "promote", current.version if current else None, actor, reason)
        return Promotion(version, current.version if current else None, changed=True)


def rollback(settings: Settings, actor: str, reason: str | None = None) -> Promotion:
    """Back to the version that was active before the active one was promoted (a stack:
    rolling back twice goes two promotions back)."""
    with _registry(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PROMOTION_LOCK,))
        current = _active(conn)
        if current is None:
            raise UserError("nothing to roll back: no version was ever promoted",
                            hint="`soundscape models promote VERSION` first")
        row = conn.execute(
            "SELECT previous_version FROM model_promotions WHERE bundle_version = %s "
            "AND action = 'promote' ORDER BY id DESC LIMIT 1", (current.version,)).fetchone()
        target = row[0] if row else None
        if target is None:
            raise UserError(f"nothing to roll back to: {current.version} was the first version "
                            "promoted", hint="promote another version instead")
        _record(conn, target, "rollback", current.version, actor, reason)
        return Promotion(target, current.version, changed=True)


def registered_location(settings: Settings, version: str) -> str:
    """Where a registered version's files are (its copy in the bundle store)."""
    with _registry(settings) as conn:
        row = conn.execute("SELECT location, registered_at FROM models WHERE bundle_version = %s",
                           (version,)).fetchone()
    if row is None or row[1] is None:
        raise UserError(f"bundle version {version} is not registered",
                        hint="`soundscape models list` shows the registered versions")
    if not row[0]:
        raise UserError(f"bundle version {version} has no stored location",
                        hint="register its folder again: `soundscape models register BUNDLE`")
    return str(row[0])


def promotion_history(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    with _registry(settings) as conn:
        rows = conn.execute(
            "SELECT at, action, bundle_version, previous_version, actor, reason "
            "FROM model_promotions ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
    return [{"at": r[0], "action": r[1], "version": r[2], "previous": r[3], "by": r[4],
             "reason": r[5]} for r in rows]


def _record(conn: psycopg.Connection[Any], version: str, action: str, previous: str | None,
            actor: str, reason: str | None) -> None:
    conn.execute("INSERT INTO model_promotions (bundle_version, action, previous_version, actor, "
                 "reason) VALUES (%s, %s, %s, %s, %s)", (version, action, previous, actor, reason))
    conn.execute("UPDATE models SET promoted_at = now(), promoted_by = %s "
                 "WHERE bundle_version = %s", (actor, version))


def _registry(settings: Settings, schema: str | None = None
              ) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
    return connect_to_table(settings, "bundle registry", schema=schema,
                            application_name="soundscape-registry")
