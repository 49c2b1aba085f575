"""Station sites read from the results database, for the worker's species-range filter.

`soundscape stations set` writes a station's location and species lists into `stations`;
workers running a windowed bundle (BirdNET) ask for them once per chunk, so all rows are
read at once and cached for `ttl_s`. The database being down must not stop scoring: the
last rows read are served (or None before any read succeeded) and a warning is logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg

from soundscape.errors import ServiceError
from soundscape.logs import get_logger
from soundscape.settings import Settings
from soundscape.sinks.connection import connect
from soundscape.station_sites import StationSite

log = get_logger(__name__)

SITES_QUERY = ("SELECT station_id, latitude, longitude, include_species, exclude_species "
               "FROM stations")


def site_from_row(
    latitude: float | None,
    longitude: float | None,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
) -> StationSite:
    """A `stations` row as the worker sees it. An empty include list means no list (not
    "nothing is in range"), and a location counts only with both coordinates."""
    located = latitude is not None and longitude is not None
    return StationSite(
        latitude=float(latitude) if located else None,  # type: ignore[arg-type]
        longitude=float(longitude) if located else None,  # type: ignore[arg-type]
        include=frozenset(include) if include else None,
        exclude=frozenset(exclude or ()),
    )


def sites_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, StationSite]:
    """(station_id, latitude, longitude, include_species, exclude_species) rows -> sites."""
    return {row[0]: site_from_row(row[1], row[2], row[3], row[4]) for row in rows}


class DatabaseStationSites:
    """StationSites over the `stations` table, through the writer URL, cached for ttl_s.

    Refreshes lazily (on the first `site()` call after the ttl), also after a failed read,
    so a database that is down costs one connection attempt per ttl, not one per chunk.
    Thread-safe; the lock also keeps concurrent callers from reading the table together.
    """

    def __init__(
        self,
        settings: Settings,
        ttl_s: float = 60.0,
        *,
        connect_timeout_s: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self.connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sites: dict[str, StationSite] | None = None
        self._checked_at: float | None = None
        self._failing = False

    def site(self, station_id: str) -> StationSite | None:
        self._refresh_if_stale()
        sites = self._sites
        return None if sites is None else sites.get(station_id)

    def refresh(self) -> bool:
        """Read the table now; False (and the old rows kept) when the database failed."""
        with self._lock:
            return self._refresh()

    def _refresh_if_stale(self) -> None:
        with self._lock:
            if self._checked_at is None or self._clock() - self._checked_at >= self.ttl_s:
                self._refresh()

    def _refresh(self) -> bool:
        self._checked_at = self._clock()
        try:
            sites = self._read()
        except (psycopg.Error, ServiceError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("station sites unavailable; serving the last known",
                        error=first, known=None if self._sites is None else len(self._sites),
                        retry_in_s=self.ttl_s)
            self._failing = True
            return False
        if self._failing:
            log.info("station sites readable again", stations=len(sites))
            self._failing = False
        self._sites = sites
        return True

    def _read(self) -> dict[str, StationSite]:
        with connect(self.settings, application_name="soundscape-sites",
                     connect_timeout_s=self.connect_timeout_s) as conn:
            return sites_from_rows(conn.execute(SITES_QUERY).fetchall())
