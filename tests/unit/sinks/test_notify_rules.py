"""Which results become notifications, and how often: the rules as pure functions."""

from __future__ import annotations

from soundscape.messages import LabelScore
from soundscape.settings import NotifyRule
from soundscape.sinks.notify_rules import (
    NS,
    Limiter,
    detection_events,
    drift_events,
    silent_events,
)
from soundscape.sinks.notify_targets import _mask
from soundscape.sinks.sample_results import detection, drift_report

START = 1_780_000_000 * NS


def _result(station: str, start: int, **scores: float):
    base = detection(station, start, detections=0)
    found = [LabelScore(label=k, probability=v) for k, v in scores.items()]
    return base.model_copy(update={"detections": found})


def test_detection_rules_pick_species_stations_and_confidence() -> None:
    rules = [NotifyRule(name="owl", species=["strix_aluco"], min_confidence=0.6),
             NotifyRule(name="any", min_confidence=0.9, stations=["roof-1"])]
    result = _result("roof-1", START, strix_aluco=0.7, parus_major=0.95, turdus_merula=0.5)
    events = detection_events(rules, result, web_url="http://127.0.0.1:8080/")
    assert sorted((e.rule, e.species) for e in events) == [("any", "parus_major"),
                                                           ("owl", "strix_aluco")]
    owl = next(e for e in events if e.rule == "owl")
    assert owl.event_id == f"owl|roof-1|strix_aluco|{result.chunk_id}"
    assert owl.body.endswith(f"/chunks/{result.chunk_id}")
    assert owl.payload["ScientificName"] == "strix_aluco" and owl.payload["Confidence"] == 0.7
    assert owl.payload["ClipName"] == f"http://127.0.0.1:8080/clips/{result.chunk_id}"
    assert detection_events(rules, _result("field-2", START, parus_major=0.99)) == []
    # the same result gives the same ids: a replay is recognised
    assert [e.event_id for e in detection_events(rules, result)] == \
        [e.event_id for e in events]


def test_drift_and_silence_events_name_what_happened() -> None:
    rules = [NotifyRule(name="drift", kind="drift_alert"),
             NotifyRule(name="quiet", kind="silent", silent_minutes=30)]
    assert drift_events(rules, drift_report("roof-1", START)) == []  # no alert, no event
    (alert,) = drift_events(rules, drift_report("roof-1", START, alert=True))
    assert alert.kind == "drift_alert" and alert.event_id == f"drift|roof-1|noise_floor|{START}"
    seen = {"roof-1": START, "field-2": START + 40 * 60 * NS}
    (silent,) = silent_events(rules, seen, START + 45 * 60 * NS)
    assert silent.station_id == "roof-1" and silent.event_id == f"quiet|roof-1|silent|{START}"
    assert silent_events(rules, seen, START + 45 * 60 * NS)[0].event_id == silent.event_id


def test_the_limiter_keeps_cooldowns_and_hourly_limits_by_event_time() -> None:
    rule = NotifyRule(name="owl", species=["any"], min_confidence=0.1, cooldown_minutes=5,
                      max_per_hour=3)
    limiter = Limiter({"owl": rule})
    sent = []
    for minute in range(0, 60, 2):
        for station in ("a-1", "b-2"):
            (event,) = detection_events([rule], _result(station, START + minute * 60 * NS,
                                                        strix_aluco=0.9))
            if limiter.allows(event) is None:
                limiter.record(event)
                sent.append((station, minute))
    assert sent == [("a-1", 0), ("b-2", 0), ("a-1", 6)]  # cooldown 5 min, then 3 an hour
    (later,) = detection_events([rule], _result("a-1", START + 61 * 60 * NS, strix_aluco=0.9))
    assert limiter.allows(later) is None  # a new hour


def test_secrets_in_apprise_urls_are_not_logged() -> None:
    assert _mask("tgram://123456:ABCDEF@987/chat") == "tgram://987/..."
    assert _mask("mailtos://user:password@mail.example.org?to=a@b") \
        == "mailtos://mail.example.org/..."


def test_a_replay_after_a_restart_is_held_back_by_cooldowns_on_either_side() -> None:
    """Sent at 0 and 5 min; after a restart the result at 1 min comes again: it was held
    back the first time, and must be again (the newest sent time alone would allow it)."""
    rule = NotifyRule(name="owl", min_confidence=0.1, cooldown_minutes=2, max_per_hour=100)
    limiter = Limiter({"owl": rule})
    (first,) = detection_events([rule], _result("a-1", START, strix_aluco=0.9))
    (later,) = detection_events([rule], _result("a-1", START + 5 * 60 * NS, strix_aluco=0.9))
    (between,) = detection_events([rule], _result("a-1", START + 60 * NS, strix_aluco=0.9))
    for event in (first, later):
        assert limiter.allows(event) is None
        limiter.record(event)
    assert limiter.allows(between) == "cooldown"
