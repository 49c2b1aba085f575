"""Reviewed clips as a labelled manifest that model training reads.

One row per reviewed chunk whose clip is kept (a reviewed clip is never evicted):

    path,start,end,labels,station,recording,chunk_id,reviewers,reviewed_at

`labels` are the chunk's labels after review, `;`-separated: a confirmed detection
keeps its label, a relabelled one gives its new label, a rejected one none; a chunk
whose every reviewed detection was rejected has no label (a checked negative). Only the
latest review of each (chunk, label) counts. `recording` (station and UTC day) is the
group training splits by, so no day of a station is in both train and validation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import psycopg

from soundscape.clip_store import clips_dir, resolve
from soundscape.settings import Settings

COLUMNS = ("path", "start", "end", "labels", "station", "recording", "chunk_id", "reviewers",
           "reviewed_at")
CHUNK_SECONDS = 10.0

_QUERY = """
WITH latest AS (
    SELECT DISTINCT ON (chunk_id, label) chunk_id, label, verdict, new_label, reviewer,
           created_at
    FROM reviews
    WHERE created_at >= %(since)s
    ORDER BY chunk_id, label, created_at DESC, review_id DESC
)
SELECT c.chunk_id, c.path, c.station_id, c.chunk_start,
       array_agg(DISTINCT CASE l.verdict WHEN 'confirm' THEN l.label
                                         WHEN 'relabel' THEN l.new_label END)
         FILTER (WHERE l.verdict <> 'reject') AS labels,
       array_agg(DISTINCT l.reviewer) AS reviewers, max(l.created_at) AS reviewed_at
FROM latest l JOIN clips c ON c.chunk_id = l.chunk_id AND c.evicted_at IS NULL
GROUP BY c.chunk_id, c.path, c.station_id, c.chunk_start
ORDER BY c.chunk_start, c.chunk_id
"""


@dataclass
class ManifestReport:
    rows: int = 0
    labelled: int = 0
    negatives: int = 0
    missing_files: int = 0


def export(settings: Settings, conn: psycopg.Connection[Any], out: TextIO,
           since: datetime | None = None) -> ManifestReport:
    root = clips_dir(settings)
    report = ManifestReport()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    cursor = conn.execute(_QUERY, {"since": since or datetime(1970, 1, 1)})
    for chunk_id, path, station, start, labels, reviewers, reviewed_at in cursor:
        file = resolve(root, path)
        if not file.is_file():
            report.missing_files += 1  # counted, not written: training would fail on it
            continue
        names = sorted(label for label in (labels or []) if label)
        writer.writerow([str(file), 0.0, CHUNK_SECONDS, ";".join(names), station,
                         f"{station}/{start.strftime('%Y-%m-%d')}", str(chunk_id),
                         ";".join(sorted(reviewers)), reviewed_at.isoformat()])
        report.rows += 1
        if names:
            report.labelled += 1
        else:
            report.negatives += 1
    return report
