"""Which results become notifications: the rules of `notify.rules`, as pure functions.

An event has an id that names what happened, not when it was seen (rule, station,
species, chunk), so a redelivered or replayed result makes the same id and the
notifier's table sends it once. De-duplication and rate limits count by event time
(the chunk's start, the drift window's end), so a replayed archive notifies as live
data would have, and a restart changes nothing.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from soundscape.messages import Detection, DriftReport
from soundscape.settings import NotifyRule

NS = 1_000_000_000


@dataclass(frozen=True)
class Event:
    event_id: str
    rule: str
    kind: str
    station_id: str
    species: str | None
    event_ns: int
    confidence: float | None
    title: str
    body: str
    #: what goes out on MQTT: BirdNET-Go's detection fields, so Home Assistant setups keep
    #: working, plus Soundscape's own
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return f"{self.rule}|{self.station_id}|{self.species or self.kind}"


def detection_events(rules: list[NotifyRule], result: Detection,
                     web_url: str | None = None) -> list[Event]:
    events: list[Event] = []
    for rule in rules:
        if rule.kind != "detection" or not _station_matches(rule, result.station_id):
            continue
        for hit in result.detections:
            if hit.probability < rule.min_confidence or not _species_matches(rule, hit.label):
                continue
            name = hit.common_name or hit.label
            when = _iso(result.chunk_start)
            events.append(Event(
                event_id=f"{rule.name}|{result.station_id}|{hit.label}|{result.chunk_id}",
                rule=rule.name, kind="detection", station_id=result.station_id,
                species=hit.label, event_ns=result.chunk_start, confidence=hit.probability,
                title=f"{name} at {result.station_id}",
                body=f"{name} ({hit.label}), {100 * hit.probability:.0f} % at "
                     f"{result.station_id}, {when} UTC"
                     + (f": {web_url.rstrip('/')}/chunks/{result.chunk_id}" if web_url else ""),
                payload=birdnet_go_payload(result, hit.label, name, hit.probability, web_url)))
    return events


def drift_events(rules: list[NotifyRule], report: DriftReport) -> list[Event]:
    if not report.alert:
        return []
    return [Event(
        event_id=f"{rule.name}|{report.station_id}|{report.check}|{report.window_start}",
        rule=rule.name, kind="drift_alert", station_id=report.station_id, species=None,
        event_ns=report.window_end, confidence=None,
        title=f"drift alert at {report.station_id}: {report.check}",
        body=f"{report.check} at {report.station_id} for {_iso(report.window_start)} .. "
             f"{_iso(report.window_end)} UTC: {report.detail}",
        payload={"station_id": report.station_id, "check": report.check,
                 "window_start": _iso(report.window_start), "window_end": _iso(report.window_end),
                 "value": report.value, "threshold": report.threshold, "detail": report.detail})
        for rule in rules
        if rule.kind == "drift_alert" and _station_matches(rule, report.station_id)]


def silent_events(rules: list[NotifyRule], last_seen_ns: dict[str, int],
                  now_ns: int) -> list[Event]:
    """A station silent for a rule's `silent_minutes`: one event per silence (its id
    names the last time the station was heard)."""
    events = []
    for rule in rules:
        if rule.kind != "silent":
            continue
        for station, seen in sorted(last_seen_ns.items()):
            if not _station_matches(rule, station):
                continue
            if now_ns - seen >= rule.silent_minutes * 60 * NS:
                minutes = (now_ns - seen) // (60 * NS)
                events.append(Event(
                    event_id=f"{rule.name}|{station}|silent|{seen}", rule=rule.name,
                    kind="silent", station_id=station, species=None, event_ns=now_ns,
                    confidence=None, title=f"{station} is silent",
                    body=f"nothing from {station} for {minutes} minutes (last {_iso(seen)} UTC)",
                    payload={"station_id": station, "last_seen": _iso(seen),
                             "silent_minutes": minutes}))
    return events


@dataclass
class Limiter:
    """De-duplication (one event per rule, station and species within the rule's
    cooldown, on either side: results replayed after a restart come again in their old
    order) and rate limits (`max_per_hour` per rule), by event time, seeded from what the
    table says was sent."""

    rules: dict[str, NotifyRule]
    sent_by_key: dict[str, list[int]] = field(default_factory=dict)  # dedup key -> event ns
    sent_times: dict[str, list[int]] = field(default_factory=dict)  # rule -> event ns

    def allows(self, event: Event) -> str | None:
        """None when it may go out, else why not ('cooldown', 'rate_limit')."""
        rule = self.rules[event.rule]
        cooldown = rule.cooldown_minutes * 60 * NS
        times = self.sent_by_key.get(event.dedup_key, [])
        at = bisect.bisect_left(times, event.event_ns)
        near = times[max(0, at - 1): at + 1]
        if any(abs(event.event_ns - t) < cooldown for t in near):
            return "cooldown"
        hour = self.sent_times.get(event.rule, [])
        start = bisect.bisect_right(hour, event.event_ns - 3600 * NS)
        end = bisect.bisect_right(hour, event.event_ns)
        if end - start >= rule.max_per_hour:
            return "rate_limit"
        return None

    def record(self, event: Event) -> None:
        bisect.insort(self.sent_by_key.setdefault(event.dedup_key, []), event.event_ns)
        bisect.insort(self.sent_times.setdefault(event.rule, []), event.event_ns)


def birdnet_go_payload(result: Detection, label: str, common: str, probability: float,
                       web_url: str | None) -> dict[str, Any]:
    start = dt.datetime.fromtimestamp(result.chunk_start / NS, dt.UTC)
    return {
        "Date": start.strftime("%Y-%m-%d"), "Time": start.strftime("%H:%M:%S"),
        "Source": {"id": result.station_id, "type": "soundscape",
                   "displayName": result.station_id},
        "BeginTime": start.isoformat(),
        "EndTime": (start + dt.timedelta(seconds=10)).isoformat(),
        "ScientificName": label, "CommonName": common, "Confidence": round(probability, 4),
        "ClipName": f"{web_url.rstrip('/')}/clips/{result.chunk_id}" if web_url else "",
        "chunk_id": str(result.chunk_id), "bundle_version": result.bundle_version,
    }


def _species_matches(rule: NotifyRule, label: str) -> bool:
    return "any" in rule.species or label in rule.species


def _station_matches(rule: NotifyRule, station: str) -> bool:
    return not rule.stations or station in rule.stations


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / NS, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
