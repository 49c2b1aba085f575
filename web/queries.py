"""What the web app reads and writes in PostgreSQL, as the web role (SELECT, INSERT on
reviews): the detections list with keyset paging, one chunk, stations, species, reviews.

Lists page by keyset on the detections key, newest first: (chunk_start, chunk_id, label)
below the last row shown, so page 1,000 costs what page 1 does and rows arriving
meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ReviewState = Literal["any", "unreviewed", "reviewed", "confirm", "reject", "relabel"]
REVIEW_STATES: tuple[str, ...] = ("any", "unreviewed", "reviewed", "confirm", "reject",
                                  "relabel")
Verdict = Literal["confirm", "reject", "relabel"]


class NotFound(LookupError):
    """What was asked for does not exist (a 404)."""


@dataclass(frozen=True)
class Filters:
    station: str | None = None
    species: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_confidence: float = 0.0
    review: ReviewState = "any"


@dataclass(frozen=True)
class Cursor:
    """The last row of a page: the next page starts below it."""

    chunk_start: datetime
    chunk_id: uuid.UUID
    label: str

    def encode(self) -> str:
        text = f"{self.chunk_start.isoformat()}|{self.chunk_id}|{self.label}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            start, chunk, label = text.split("|", 2)
            return cls(datetime.fromisoformat(start), uuid.UUID(chunk), label)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a page cursor: {token[:40]!r}") from exc


@dataclass
class Page:
    rows: list[dict[str, Any]] = field(default_factory=list)
    next: Cursor | None = None


_LATEST_REVIEW = """
LEFT JOIN LATERAL (
    SELECT r.verdict, r.new_label, r.reviewer, r.created_at AS reviewed_at FROM reviews r
    WHERE r.chunk_id = d.chunk_id AND r.label = d.label
    ORDER BY r.created_at DESC, r.review_id DESC LIMIT 1) rv ON true"""


def detections(conn: psycopg.Connection[Any], filters: Filters, limit: int,
               after: Cursor | None = None) -> Page:
    where: list[sql.Composable] = [sql.SQL("d.probability >= {}").format(filters.min_confidence)]
    if filters.station:
        where.append(sql.SQL("d.station_id = {}").format(filters.station))
    if filters.species:
        where.append(sql.SQL("d.label = {}").format(filters.species))
    if filters.since:
        where.append(sql.SQL("d.chunk_start >= {}").format(filters.since))
    if filters.until:
        where.append(sql.SQL("d.chunk_start < {}").format(filters.until))
    if after is not None:
        where.append(sql.SQL("(d.chunk_start, d.chunk_id, d.label) < ({}, {}, {})").format(
            after.chunk_start, after.chunk_id, after.label))
    review = {"unreviewed": "rv.verdict IS NULL", "reviewed": "rv.verdict IS NOT NULL",
              "confirm": "rv.verdict = 'confirm'", "reject": "rv.verdict = 'reject'",
              "relabel": "rv.verdict = 'relabel'"}.get(filters.review)
    if review:
        where.append(sql.SQL(review))
    query = sql.SQL("""
SELECT d.chunk_start, d.chunk_id, d.label, d.station_id, d.probability, d.common_name,
       d.window_start_s, d.window_end_s,
       (cl.evicted_at IS NULL AND cl.path IS NOT NULL) AS has_clip,
       rv.verdict, rv.new_label, rv.reviewer, rv.reviewed_at
FROM detections d
LEFT JOIN clips cl ON cl.chunk_id = d.chunk_id""" + _LATEST_REVIEW + """
WHERE {where}
ORDER BY d.chunk_start DESC, d.chunk_id DESC, d.label DESC
LIMIT {limit}""").format(where=sql.SQL(" AND ").join(where), limit=limit + 1)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query).fetchall()
    page = Page(rows[:limit])
    if len(rows) > limit:
        last = rows[limit - 1]
        page.next = Cursor(last["chunk_start"], last["chunk_id"], last["label"])
    return page


def chunk(conn: psycopg.Connection[Any], chunk_id: uuid.UUID) -> dict[str, Any]:
    """One scored chunk with its detections, clip and reviews; NotFound if none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT chunk_id, chunk_start, station_id, sample_rate, source, bundle_version,"
            " top_label, top_probability, top_k, detection_count, rms_dbfs, noise_floor_dbfs,"
            " peak_dbfs, clipping_ratio, silence_ratio, captured_at, published_at, consumed_at,"
            " scored_at, written_at, decode_ms, features_ms, inference_ms, branch_ms,"
            " batch_size, worker_id, windows FROM chunks WHERE chunk_id = %s", (chunk_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no chunk {chunk_id}")
        row["detections"] = cur.execute(
            "SELECT d.label, d.probability, d.common_name, d.window_start_s, d.window_end_s,"
            " d.in_range, rv.verdict, rv.new_label, rv.reviewer, rv.reviewed_at"
            " FROM detections d" + _LATEST_REVIEW +
            " WHERE d.chunk_start = %s AND d.chunk_id = %s ORDER BY d.probability DESC",
            (row["chunk_start"], chunk_id)).fetchall()
        row["clip"] = cur.execute(
            "SELECT path, bytes, codec, reason, kept_at, evicted_at FROM clips"
            " WHERE chunk_id = %s", (chunk_id,)).fetchone()
        row["reviews"] = cur.execute(
            "SELECT review_id, label, verdict, new_label, reviewer, comment, created_at"
            " FROM reviews WHERE chunk_id = %s ORDER BY created_at DESC, review_id DESC",
            (chunk_id,)).fetchall()
    return row


def clip(conn: psycopg.Connection[Any], chunk_id: uuid.UUID) -> dict[str, Any]:
    """The kept clip of a chunk (not evicted); NotFound otherwise."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT path, codec, chunk_start, station_id FROM clips"
                          " WHERE chunk_id = %s AND evicted_at IS NULL", (chunk_id,)).fetchone()
    if row is None:
        raise NotFound(f"no clip of chunk {chunk_id} is kept")
    return row


def stations(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Each station with its last heartbeat and today's detections."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("""
SELECT s.station_id, s.name, s.latitude, s.longitude, s.last_seen,
       hb.sent_at AS last_heartbeat, hb.spool_depth, hb.disk_free_bytes,
       hb.cpu_temperature_c, hb.software_version,
       (SELECT count(*) FROM detections d WHERE d.station_id = s.station_id
          AND d.chunk_start >= date_trunc('day', now())) AS detections_today
FROM stations s
LEFT JOIN LATERAL (
    SELECT sent_at, spool_depth, disk_free_bytes, cpu_temperature_c, software_version
    FROM station_heartbeats h WHERE h.station_id = s.station_id
    ORDER BY sent_at DESC LIMIT 1) hb ON true
ORDER BY s.station_id""").fetchall()


def species_counts(conn: psycopg.Connection[Any], since: datetime,
                   limit: int = 50) -> list[dict[str, Any]]:
    """Detections per species since `since`: one pass over the rows (no DISTINCT, which
    sorts), then each shown label's common name from its newest row (an index lookup)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT label, count(*) AS detections, max(probability) AS best"
            " FROM detections WHERE chunk_start >= %s GROUP BY label"
            " ORDER BY count(*) DESC, label LIMIT %s", (since, limit)).fetchall()
        for row in rows:
            newest = cur.execute(
                "SELECT common_name FROM detections WHERE label = %s AND chunk_start >= %s"
                " ORDER BY chunk_start DESC LIMIT 1", (row["label"], since)).fetchone()
            row["common_name"] = newest["common_name"] if newest else None
    return rows


def recent_alerts(conn: psycopg.Connection[Any], limit: int = 10) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT station_id, check_name, window_start, window_end, value, threshold, detail"
            " FROM drift_reports WHERE alert ORDER BY window_start DESC LIMIT %s",
            (limit,)).fetchall()


def species(conn: psycopg.Connection[Any], label: str) -> dict[str, Any]:
    """A species: detections per day and per station, and its best examples with clips."""
    with conn.cursor(row_factory=dict_row) as cur:
        per_day = cur.execute(
            "SELECT date_trunc('day', chunk_start) AS day, count(*) AS detections"
            " FROM detections WHERE label = %s GROUP BY 1 ORDER BY 1", (label,)).fetchall()
        if not per_day:
            raise NotFound(f"no detection of {label!r}")
        per_station = cur.execute(
            "SELECT station_id, count(*) AS detections, max(probability) AS best"
            " FROM detections WHERE label = %s GROUP BY 1 ORDER BY 2 DESC", (label,)).fetchall()
        best = cur.execute(
            "SELECT d.chunk_id, d.chunk_start, d.station_id, d.probability"
            " FROM detections d JOIN clips cl ON cl.chunk_id = d.chunk_id"
            " AND cl.evicted_at IS NULL WHERE d.label = %s"
            " ORDER BY d.probability DESC LIMIT 12", (label,)).fetchall()
        common = cur.execute("SELECT max(common_name) FROM detections WHERE label = %s",
                             (label,)).fetchone()
    return {"label": label, "common_name": common[0] if common else None,
            "per_day": per_day, "per_station": per_station, "best": best}


def labels(conn: psycopg.Connection[Any]) -> list[str]:
    """Every label a registered bundle knows: the choices when relabelling."""
    found: set[str] = set()
    for (names,) in conn.execute("SELECT labels FROM models WHERE registered_at IS NOT NULL"
                                 " AND labels IS NOT NULL"):
        found.update(str(n) for n in names)
    return sorted(found)


def add_review(conn: psycopg.Connection[Any], chunk_id: uuid.UUID, label: str,
               verdict: Verdict, reviewer: str, new_label: str | None = None,
               comment: str | None = None) -> int:
    """Store a verdict on an existing detection (NotFound otherwise); returns its id."""
    if verdict not in ("confirm", "reject", "relabel"):
        raise ValueError(f"verdict must be confirm, reject or relabel, not {verdict!r}")
    if (verdict == "relabel") != bool(new_label):
        raise ValueError("relabel needs new_label, and only relabel takes one")
    with conn.transaction():
        found = conn.execute(
            "SELECT d.chunk_start FROM chunks c JOIN detections d"
            " ON d.chunk_start = c.chunk_start AND d.chunk_id = c.chunk_id"
            " WHERE c.chunk_id = %s AND d.label = %s", (chunk_id, label)).fetchone()
        if found is None:
            raise NotFound(f"chunk {chunk_id} has no detection of {label!r}")
        row = conn.execute(
            "INSERT INTO reviews (chunk_id, chunk_start, label, verdict, new_label, reviewer,"
            " comment) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING review_id",
            (chunk_id, found[0], label, verdict, new_label or None, reviewer,
             comment or None)).fetchone()
    assert row is not None
    return int(row[0])
