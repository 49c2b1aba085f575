"""A station's state machine: windows close by event time, once; redeliveries and late
chunks are counted, not used; silence is reported; the state survives JSON (a restart)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
from drift_observations import NEW_MIX, observations

from soundscape.messages import DriftReport
from soundscape.processors.drift.station import (
    DictPaneStore,
    StationDrift,
    StationMeta,
)
from soundscape.processors.drift.summary import NS, Observation, Pane, Summary
from soundscape.settings import DriftSettings

T0 = 1_780_000_200 * NS  # a multiple of 10 min
TUMBLING = DriftSettings(window_s=600, hop_s=600, reference_windows=3, grace_s=30)
HOPPING = DriftSettings(window_s=600, hop_s=300, reference_windows=3, grace_s=30)


def feed(drift: StationDrift, obs: Iterable[Observation]) -> list[DriftReport]:
    return [r for o in obs for r in drift.ingest(o).reports]


def hour(change_at_min: int | None = None, **changed: object) -> list[Observation]:
    """An hour of one station; from `change_at_min` on with `changed` distributions."""
    if change_at_min is None:
        return list(observations("st", T0, 360, seed=1))
    before = list(observations("st", T0, change_at_min * 6, seed=1))
    after = observations("st", T0 + change_at_min * 60 * NS, (60 - change_at_min) * 6,
                         seed=2, **changed)  # type: ignore[arg-type]
    return before + list(after)


def fresh(drift: DriftSettings = TUMBLING) -> StationDrift:
    return StationDrift(StationMeta("st"), DictPaneStore(), drift, clock=lambda: 42)


@pytest.mark.parametrize("drift", [TUMBLING, HOPPING], ids=["tumbling", "hopping"])
def test_an_unchanged_hour_closes_every_window_without_alerts(drift: DriftSettings) -> None:
    station = fresh(drift)
    reports = feed(station, hour())
    starts = sorted({r.window_start for r in reports})
    hop = drift.hop_s * NS
    # Windows close once the newest chunk end passes end + grace: the last one open.
    assert starts[-1] == T0 + 3600 * NS - drift.window_s * NS - hop
    assert starts == list(range(starts[0], starts[-1] + 1, hop))
    assert not [r for r in reports if r.alert]
    keys = [(r.check, r.window_start) for r in reports]
    assert len(keys) == len(set(keys))  # each window reported once
    compared = [r for r in reports if r.check == "noise_floor"]
    assert compared and all(r.reference["reference_chunks"] >= 30 for r in compared)
    assert all(r.created_at == 42 for r in reports)


@pytest.mark.parametrize("drift", [TUMBLING, HOPPING], ids=["tumbling", "hopping"])
@pytest.mark.parametrize(("changed", "check"), [
    ({"noise_floor": -32.0}, "noise_floor"),
    ({"mix": NEW_MIX}, "label_js"),
    ({"missing": 0.3}, "gaps"),
])
def test_a_change_alerts_in_the_first_window_holding_it(
    drift: DriftSettings, changed: dict[str, object], check: str
) -> None:
    reports = feed(fresh(drift), hour(40, **changed))
    alerts = sorted(r.window_start for r in reports if r.alert and r.check == check)
    change = T0 + 40 * 60 * NS
    assert alerts, f"no {check} alert"
    first_end = alerts[0] + drift.window_s * NS
    assert alerts[0] <= change < first_end <= change + drift.window_s * NS


def test_redelivered_and_late_chunks_are_counted_not_used() -> None:
    station = fresh()
    obs = hour()
    reports = feed(station, obs[:200])
    again = [station.ingest(o) for o in obs[190:200]]
    assert {i.outcome for i in again} == {"duplicate"}
    late = station.ingest(obs[0])  # its window closed long ago
    assert late.outcome == "late" and late.reports == []
    assert station.meta.duplicates == 10 and station.meta.late == 1
    assert reports


def test_a_pane_the_metadata_does_not_list_is_left_over_and_starts_afresh() -> None:
    """Kafka aborted the chunks that made a pane while the store kept it: the committed
    metadata does not list it, so those chunks, redelivered, count once (not as
    duplicates of a pane no window would read)."""
    obs = hour()
    station = fresh()
    feed(station, obs[:60])  # the first 10-min pane, committed
    committed = StationMeta.from_json(json.loads(json.dumps(station.meta.to_json())))
    feed(station, obs[60:70])  # a new pane, then the transaction is aborted
    assert station.meta.panes[-1] not in committed.panes
    again = StationDrift(committed, station.store, TUMBLING, clock=lambda: 42)
    redone = [again.ingest(o) for o in obs[60:70]]
    assert {r.outcome for r in redone} == {"used"}
    reference = fresh()
    feed(reference, obs[:60])
    assert [r for i in redone for r in i.reports] == feed(reference, obs[60:70])
    assert again.meta.to_json() == reference.meta.to_json()
    assert feed(again, obs[70:]) == feed(reference, obs[70:])


def test_silence_is_reported_once_and_empty_windows_are_skipped() -> None:
    station = fresh()
    first = list(observations("st", T0, 60, seed=1))  # 10 min
    back = list(observations("st", T0 + 3 * 3600 * NS, 60, seed=2))  # 3 h later
    reports = feed(station, first) + feed(station, back)
    silent = [r for r in reports if r.check == "silent"]
    assert len(silent) == 1
    assert silent[0].window_start == T0 + 600 * NS and silent[0].value == pytest.approx(3 * 3600 - 600)
    assert station.silence_reports(T0 + 5 * 3600 * NS)  # silent again, for another stretch
    assert station.silence_reports(T0 + 6 * 3600 * NS) == []  # ... reported once
    # Nothing about the hours without chunks but the silence.
    starts = {r.window_start for r in reports if r.check != "silent"}
    assert starts == {T0}


def test_state_survives_json_between_chunks() -> None:
    """What the faust tables hold: a restart between any two chunks changes nothing."""
    obs = hour(40, noise_floor=-32.0)
    straight = feed(fresh(), obs)

    meta, panes = StationMeta("st").to_json(), {}
    resumed: list[DriftReport] = []
    for index in range(0, len(obs), 37):
        store = DictPaneStore()
        store.panes = {int(k): Pane.from_json(json.loads(v)) for k, v in panes.items()}
        station = StationDrift(StationMeta.from_json(json.loads(json.dumps(meta))), store,
                               TUMBLING, clock=lambda: 42)
        resumed += feed(station, obs[index:index + 37])
        meta = station.meta.to_json()
        panes = {str(k): json.dumps(p.to_json()) for k, p in store.panes.items()}
    assert resumed == straight


def test_panes_are_pruned_to_what_windows_and_references_need() -> None:
    station = fresh()
    store = station.store
    assert isinstance(store, DictPaneStore)
    feed(station, list(observations("st", T0, 6 * 24 * 6, seed=1)))  # a day
    # 3 reference windows + the open window + the next one filling.
    assert len(store.panes) <= 5 and station.meta.panes == sorted(store.panes)


def test_baseline_reference_compares_with_the_pinned_period() -> None:
    from datetime import UTC, datetime

    end = datetime.fromtimestamp(T0 / NS + 1800, UTC)
    drift = DriftSettings(window_s=600, hop_s=600, reference="baseline", grace_s=30,
                          baseline_start=datetime.fromtimestamp(T0 / NS, UTC), baseline_end=end)
    baseline = Summary.of(observations("st", T0, 180, seed=5))
    station = StationDrift(StationMeta("st"), DictPaneStore(), drift,
                           baseline=lambda _: (baseline, {"mode": "baseline"}))
    reports = feed(station, hour(40, noise_floor=-32.0))
    compared = {r.window_start for r in reports if r.check == "noise_floor"}
    assert min(compared) == T0 + 1800 * NS  # windows inside the baseline are not compared
    alerts = {r.window_start for r in reports if r.alert and r.check == "noise_floor"}
    assert alerts == {T0 + 2400 * NS}
    with pytest.raises(ValueError):
        StationDrift(StationMeta("st"), DictPaneStore(), drift)
