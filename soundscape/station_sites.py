"""Where a station is and which species it expects: the contract between the results
database (which stores it, `soundscape stations set`) and the worker (whose range filter
reads it). The worker depends only on this protocol, never on the sink's tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class StationSite:
    """A station's location and species lists; any part may be unknown."""

    latitude: float | None = None
    longitude: float | None = None
    #: When not None, only these labels (scientific names) count as in range.
    include: frozenset[str] | None = None
    #: Labels never in range at this station, whatever the range model says.
    exclude: frozenset[str] = field(default_factory=frozenset)

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


class StationSites(Protocol):
    def site(self, station_id: str) -> StationSite | None:
        """The station's site, or None when the station is unknown. Must not raise for a
        database that is down: serve the last known value (or None) and log it."""
        ...


class StaticSites:
    """A fixed mapping: tests, and workers configured without a database."""

    def __init__(self, sites: dict[str, StationSite] | None = None) -> None:
        self._sites = dict(sites or {})

    def site(self, station_id: str) -> StationSite | None:
        return self._sites.get(station_id)
