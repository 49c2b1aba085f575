"""The chaos run's plan: seeded, the mix the issue asks for, brokers one at a time."""

from __future__ import annotations

import pytest

from soundscape.app.chaos_plan import (
    PAUSES_S,
    chunks_per_station,
    kill_mix,
    offline_segments,
    plan_faults,
)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert plan_faults(7, 20, 300) == plan_faults(7, 20, 300)
    assert plan_faults(7, 20, 300) != plan_faults(8, 20, 300)


@pytest.mark.parametrize("kills", [0, 1, 3, 4, 10, 20, 57])
def test_the_mix_adds_up_and_has_every_kind_from_four_kills(kills: int) -> None:
    mix = kill_mix(kills)
    assert sum(mix.values()) == kills
    if kills >= 4:
        assert all(mix[kind] >= 1 for kind in ("worker", "sink", "drift", "broker"))
    if kills >= 20:
        assert mix["broker"] >= 3


def test_twenty_kills_plan_the_long_runs_faults() -> None:
    plan = plan_faults(1, 20, 250, postgres_outage_s=60)
    kinds = [f.kind for f in plan]
    assert len(plan) == 21 and kinds.count("postgres") == 1 and kinds.count("broker") >= 3
    assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)
    for fault in plan:
        assert 0.1 * 250 <= fault.at_s <= 0.85 * 250
        if fault.kind in PAUSES_S:
            low, high = PAUSES_S[fault.kind]
            assert low <= fault.pause_s <= high
    postgres = next(f for f in plan if f.kind == "postgres")
    assert postgres.pause_s == 60 and postgres.at_s <= 0.5 * 250


def test_broker_kills_are_spaced_so_each_broker_is_back_before_the_next() -> None:
    for seed in range(30):
        brokers = [f for f in plan_faults(seed, 20, 400) if f.kind == "broker"]
        for a, b in zip(brokers, brokers[1:], strict=False):
            assert b.at_s - a.at_s >= a.pause_s, (seed, a, b)
        assert all(1 <= f.target <= 3 for f in brokers)


def test_targets_name_existing_services() -> None:
    for fault in plan_faults(3, 40, 300, workers=2, sinks=3):
        limit = {"worker": 2, "sink": 3, "drift": 1, "broker": 3, "postgres": 1}[fault.kind]
        assert 1 <= fault.target <= limit


def test_no_postgres_outage_when_asked_for_none() -> None:
    assert all(f.kind != "postgres" for f in plan_faults(1, 10, 100, postgres_outage_s=0))


def test_the_offline_station_records_before_during_and_after() -> None:
    segments = offline_segments(100, 60)
    assert [(s.first, s.chunks, s.online) for s in segments] == [
        (0, 8, True), (8, 60, False), (68, 32, True)]
    assert sum(s.chunks for s in segments) == 100
    # too short for the whole outage: most of it offline, some chunks either side
    short = offline_segments(30, 60)
    assert sum(s.chunks for s in short) == 30 and short[0].online and not short[1].online
    assert offline_segments(50, 0) == offline_segments(50, 0)[:1]


def test_chunks_are_shared_evenly() -> None:
    assert chunks_per_station(10, 4) == [3, 3, 2, 2]
    with pytest.raises(ValueError):
        chunks_per_station(3, 4)


def test_kills_hit_only_the_chosen_kinds() -> None:
    mix = kill_mix(10, ("worker", "sink", "drift"))
    assert mix == {"worker": 4, "sink": 4, "drift": 2, "broker": 0}
    assert kill_mix(3, ("broker",)) == {"worker": 0, "sink": 0, "drift": 0, "broker": 3}
    plan = plan_faults(3, 10, 130, kinds=("worker", "sink", "drift"))
    assert {f.kind for f in plan} == {"worker", "sink", "drift", "postgres"} and len(plan) == 11
    with pytest.raises(ValueError):
        kill_mix(5, ("printer",))
