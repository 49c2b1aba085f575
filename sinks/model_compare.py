"""`soundscape models compare LIVE CANDIDATE --since T`: two bundle versions on the same
chunks, from the results database.

A version's results are read from the live tables (chunks, detections) where it
produced live results, and from shadow_results where it was scored in shadow, so the
same command compares a candidate in shadow with the live bundle, and, after a
promote, the new live bundle with the old. Only chunks both versions scored count.

- agreement: the share of chunks with the same top label, and with the same set of
  detected labels;
- per-species shifts: how many chunks each version detects each label in;
- precision on reviewed chunks: a detected label a reviewer confirmed (or relabelled
  to) is right, one they rejected (or relabelled away) is wrong, one nobody reviewed
  is not counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from soundscape.errors import UserError
from soundscape.settings import Settings
from soundscape.sinks.connection import connect_to_table

#: The live tables first: a version's live result wins over its shadow one.
_RESULTS = """
SELECT c.chunk_id, c.top_label,
       coalesce(array_agg(d.label) FILTER (WHERE d.label IS NOT NULL), '{}') AS detected
FROM chunks c
LEFT JOIN detections d ON d.chunk_start = c.chunk_start AND d.chunk_id = c.chunk_id
WHERE c.bundle_version = %(v)s AND c.chunk_start >= %(since)s AND c.chunk_start < %(until)s
GROUP BY c.chunk_id, c.top_label
UNION ALL
SELECT s.chunk_id, s.top_label, ARRAY(SELECT jsonb_object_keys(s.detected)) AS detected
FROM shadow_results s
WHERE s.bundle_version = %(v)s AND s.chunk_start >= %(since)s AND s.chunk_start < %(until)s
"""

_REVIEWS = """
SELECT DISTINCT ON (chunk_id, label) chunk_id, label, verdict, new_label
FROM reviews WHERE chunk_start >= %(since)s AND chunk_start < %(until)s
ORDER BY chunk_id, label, created_at DESC, review_id DESC
"""

#: Species listed by the size of their count shift.
TOP_SHIFTS = 20


@dataclass(frozen=True)
class Scored:
    top: str | None
    detected: frozenset[str]


def compare(settings: Settings, live: str, candidate: str, since: datetime,
            until: datetime) -> dict[str, Any]:
    if live == candidate:
        raise UserError("compare two different versions")
    with connect_to_table(settings, "shadow results", application_name="soundscape-compare") as conn:
        a, b = (_results(conn, v, since, until) for v in (live, candidate))
        truth = _review_truth(conn, since, until)
    for version, results in ((live, a), (candidate, b)):
        if not results:
            raise UserError(f"version {version} scored no chunk between {since.isoformat()} and "
                            f"{until.isoformat()}",
                            hint="check the version (`soundscape models list`) and --since; a "
                                 "candidate needs `worker --shadow VERSION` and `sink --shadow`")
    return summarise(live, candidate, a, b, truth) | {
        "since": since.isoformat(), "until": until.isoformat()}


def summarise(live: str, candidate: str, a: dict[uuid.UUID, Scored], b: dict[uuid.UUID, Scored],
              truth: dict[uuid.UUID, tuple[set[str], set[str]]]) -> dict[str, Any]:
    """The figures, from each version's results by chunk and the reviews' verdicts."""
    common = a.keys() & b.keys()
    same_top = sum(1 for c in common if a[c].top == b[c].top)
    same_set = sum(1 for c in common if a[c].detected == b[c].detected)
    counts: dict[str, list[int]] = {}
    for chunk in common:
        for index, scored in enumerate((a[chunk], b[chunk])):
            for label in scored.detected:
                counts.setdefault(label, [0, 0])[index] += 1
    shifts = sorted(({"label": label, "live": n[0], "candidate": n[1], "shift": n[1] - n[0]}
                     for label, n in counts.items()),
                    key=lambda row: (-abs(row["shift"]), row["label"]))
    reviewed = [c for c in common if c in truth]
    return {
        "live": live, "candidate": candidate,
        "chunks": {"live": len(a), "candidate": len(b), "both": len(common)},
        "agreement": {"top_label": _share(same_top, len(common)),
                      "detected_set": _share(same_set, len(common))},
        "species_shifts": shifts[:TOP_SHIFTS],
        "species_changed": sum(1 for row in shifts if row["shift"]),
        "reviewed": {"chunks": len(reviewed),
                     "live": _precision([a[c] for c in reviewed], [truth[c] for c in reviewed]),
                     "candidate": _precision([b[c] for c in reviewed],
                                             [truth[c] for c in reviewed])},
    }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _precision(results: list[Scored], truths: list[tuple[set[str], set[str]]]) -> dict[str, Any]:
    right = wrong = 0
    for scored, (true, false) in zip(results, truths, strict=True):
        right += len(scored.detected & true)
        wrong += len((scored.detected & false) - true)
    return {"right": right, "wrong": wrong, "precision": _share(right, right + wrong)}


def _results(conn: psycopg.Connection[Any], version: str, since: datetime,
             until: datetime) -> dict[uuid.UUID, Scored]:
    found: dict[uuid.UUID, Scored] = {}
    for chunk_id, top, detected in conn.execute(
            _RESULTS, {"v": version, "since": since, "until": until}):
        found.setdefault(chunk_id, Scored(top, frozenset(detected)))
    return found


def _review_truth(conn: psycopg.Connection[Any], since: datetime, until: datetime
                  ) -> dict[uuid.UUID, tuple[set[str], set[str]]]:
    """Per reviewed chunk: (labels it holds, labels it does not), from the latest verdicts."""
    truth: dict[uuid.UUID, tuple[set[str], set[str]]] = {}
    for chunk_id, label, verdict, new_label in conn.execute(
            _REVIEWS, {"since": since, "until": until}):
        true, false = truth.setdefault(chunk_id, (set(), set()))
        if verdict == "confirm":
            true.add(label)
        else:
            false.add(label)
            if verdict == "relabel" and new_label:
                true.add(new_label)
    return truth
