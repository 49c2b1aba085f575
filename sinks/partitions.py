"""Create time partitions before rows need them, and drop the ones past retention.

The sink asks `ensure_covering` for every batch (a cached lookup; it creates a partition
only for a time no partition covers yet, e.g. an archive replay from years ago) and runs
`maintain` at start and every `sink.maintenance_interval_s`; `soundscape db maintain`
runs the same. Creation happens under an advisory lock, after re-reading the catalogue,
so several sinks never race or overlap. Expired partitions are detached CONCURRENTLY
(readers are not blocked) and then dropped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.settings import Settings
from soundscape.sinks.partition_plan import (
    Partition,
    TimeRange,
    expired,
    free_range,
    parse_bound,
    partition_name,
    ranges_ahead,
    retention_horizon,
)
from soundscape.sinks.schema import PARTITION_KEYS

log = get_logger(__name__)

#: pg_advisory lock key that serialises partition changes across sinks and `db maintain`.
PARTITION_LOCK_KEY = 0x50554E44  # "SOUND"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CATALOG = """
SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid),
       i.inhdetachpending
FROM pg_inherits i
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_class child ON child.oid = i.inhrelid
WHERE i.inhparent = ANY(SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
ORDER BY 1, 2
"""


def owns(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether the connected role has its owner's rights on `table` (the owner, or a
    superuser): only they may add or drop partitions directly."""
    row = conn.execute("SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class "
                       "WHERE oid = to_regclass(%s)", (table,)).fetchone()
    return bool(row and row[0])


def from_ns(ns: int) -> datetime:
    """timestamptz keeps microseconds: truncate the same way the database does."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def to_ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    horizon: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "dropped": self.dropped,
            "retention_horizon": self.horizon.isoformat() if self.horizon else None,
        }


class PartitionManager:
    """Knows each partitioned table's ranges; one per connection owner (not thread-safe)."""

    def __init__(self, settings: Settings, tables: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.tables = dict(tables or PARTITION_KEYS)
        self._spans: dict[str, list[TimeRange]] = {}
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self._lowers: dict[str, list[int]] = {}
        self._warned_retention = False

    # ---- catalogue ---------------------------------------------------------------------
    def catalogue(self, conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Partition, bool]]]:
        """Every partition per table with its range and whether a detach is pending."""
        found: dict[str, list[tuple[Partition, bool]]] = {t: [] for t in self.tables}
        missing = conn.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            (list(self.tables),),
        ).fetchall()
        if missing:
            raise ServiceError(
                f"tables {', '.join(r[0] for r in missing)} do not exist in the database",
                hint="run `soundscape db upgrade` first",
            )
        for parent, child, bound, pending in conn.execute(_CATALOG, (list(self.tables),)):
            span = parse_bound(bound or "")
            if span is not None:
                found[parent].append((Partition(child, span), bool(pending)))
        return found

    def refresh(self, conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Partition, bool]]]:
        catalogue = self.catalogue(conn)
        for table, parts in catalogue.items():
            spans = sorted(p.span for p, pending in parts if not pending)
            self._spans[table] = spans
            self._ranges[table] = [(_clamp_ns(s.lower), _clamp_ns(s.upper)) for s in spans]
            self._lowers[table] = [lower for lower, _ in self._ranges[table]]
        return catalogue

    def covered(self, table: str, ns: int) -> bool:
        ranges = self._ranges.get(table, [])
        index = bisect.bisect_right(self._lowers.get(table, []), ns) - 1
        return index >= 0 and ns < ranges[index][1]

    # ---- creating ----------------------------------------------------------------------
    def ensure_covering(
        self, conn: psycopg.Connection[Any], table: str, times_ns: Iterable[int]
    ) -> list[str]:
        """Create what is missing so that a row at each time has a partition."""
        if table not in self._ranges:
            self.refresh(conn)
        created: list[str] = []
        for ns in times_ns:
            if not self.covered(table, ns):
                created += self._create(conn, table, [from_ns(ns)])
                if not self.covered(table, ns):
                    raise ServiceError(
                        f"no partition of {table} covers {from_ns(ns).isoformat()} after "
                        "creating one: a partition made by hand may overlap",
                        hint="compare `soundscape db status` with the partitions in psql",
                    )
        return created

    def create_ahead(self, conn: psycopg.Connection[Any], now: datetime) -> list[str]:
        sink = self.settings.sink
        spans = ranges_ahead(now, sink.partition_interval, sink.partitions_ahead)
        created: list[str] = []
        for table in self.tables:
            created += self._create(conn, table, [s.lower for s in spans])
        return created

    def _create(self, conn: psycopg.Connection[Any], table: str, moments: list[datetime]) -> list[str]:
        created: list[str] = []
        interval = self.settings.sink.partition_interval
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '10s'")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
            self.refresh(conn)
            owner = owns(conn, table)
            for moment in moments:
                span = free_range(moment, interval, self._spans[table])
                if span is None:
                    continue
                name = partition_name(table, span.lower)
                if owner:
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {part} PARTITION OF {parent} "
                            "FOR VALUES FROM ({lo}) TO ({hi})"
                        ).format(
                            part=sql.Identifier(name),
                            parent=sql.Identifier(table),
                            lo=sql.Literal(span.lower.isoformat()),
                            hi=sql.Literal(span.upper.isoformat()),
                        )
                    )
                    self._grant_reader(conn, name)
                else:  # the writer: through the function the owner made (migration 0006)
                    made = conn.execute("SELECT soundscape_add_partition(%s, %s, %s)",
                                        (table, span.lower, span.upper)).fetchone()
                    assert made is not None and made[0] == name, (made, name)
                self.refresh(conn)
                created.append(name)
        for name in created:
            log.info("partition created", partition=name)
        return created

    def _grant_reader(self, conn: psycopg.Connection[Any], name: str) -> None:
        """Grafana reads as the reader; default privileges cover this locally, not always."""
        reader = self.settings.postgres.reader_user
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s AND rolname <> current_user", (reader,)
        ).fetchone()
        if exists:
            conn.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(reader)
                )
            )

    # ---- retention ---------------------------------------------------------------------
    def maintain(
        self, conn: psycopg.Connection[Any], now: datetime | None = None, dry_run: bool = False
    ) -> MaintenanceReport:
        """Create the partitions ahead and drop those past retention (if configured)."""
        now = now or datetime.now(UTC)
        report = MaintenanceReport(horizon=retention_horizon(now, self.settings.sink.retention_days))
        if dry_run:
            catalogue = self.catalogue(conn)
            sink = self.settings.sink
            for table, parts in catalogue.items():
                spans = sorted(p.span for p, _ in parts)
                for span in ranges_ahead(now, sink.partition_interval, sink.partitions_ahead):
                    free = free_range(span.lower, sink.partition_interval, spans)
                    if free is not None:
                        report.created.append(partition_name(table, free.lower))
                report.dropped += [p.name for p in expired((p for p, _ in parts), report.horizon)]
            return report
        report.created = self.create_ahead(conn, now)
        report.dropped = self.drop_expired(conn, report.horizon)
        return report

    def drop_expired(self, conn: psycopg.Connection[Any], horizon: datetime | None) -> list[str]:
        if horizon is None:
            return []
        if not all(owns(conn, table) for table in self.tables):
            if not self._warned_retention:
                log.warning("retention skipped: dropping partitions is the owner's right, not "
                            "this role's", hint="run `soundscape db maintain` (as the owner) "
                            "daily, e.g. from a systemd timer or cron")
                self._warned_retention = True
            return []
        dropped: list[str] = []
        conn.execute("SELECT pg_advisory_lock(%s)", (PARTITION_LOCK_KEY,))
        try:
            for table, parts in self.catalogue(conn).items():
                pending = {p.name for p, is_pending in parts if is_pending}
                for part in expired((p for p, _ in parts), horizon):
                    self._detach_and_drop(conn, table, part.name, part.name in pending)
                    dropped.append(part.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PARTITION_LOCK_KEY,))
            self.refresh(conn)
        return dropped

    def _detach_and_drop(
        self, conn: psycopg.Connection[Any], table: str, name: str, pending: bool
    ) -> None:
        mode = "FINALIZE" if pending else "CONCURRENTLY"
        # DETACH ... CONCURRENTLY may not run in a transaction block: conn is autocommit.
        conn.execute(
            sql.SQL("ALTER TABLE {parent} DETACH PARTITION {part} " + mode).format(
                parent=sql.Identifier(table), part=sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
        log.info("partition dropped", partition=name, reason="past retention")


def _clamp_ns(moment: datetime) -> int:
    """Bounds as ns for fast lookups; MINVALUE / MAXVALUE clamp to the int64 range."""
    return max(-(2**63), min(2**63 - 1, to_ns(moment)))
