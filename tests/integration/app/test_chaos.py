"""`soundscape chaos` end to end: three brokers, two workers, two sinks and the drift app
under a dozen faults at once (kill -9 of workers, sinks and the drift app, PostgreSQL
stopped, a station offline), and nothing lost or duplicated.

Broker kills are left to the full run (`soundscape chaos`, docs/how-to/scale-out.md): in
one of six runs with broker kills, the read-committed consumers (the sinks, the drift
app) stopped receiving for minutes after a broker had come back (nothing was lost, and
a reader started later read everything). Until that is understood, a test that fails
that way would only repeat what the docs say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def test_chaos_run_loses_and_duplicates_nothing(run_state_dir: Path) -> None:
    env = os.environ | {"SOUNDSCAPE_STATE_DIR": str(run_state_dir / "chaos-base")}
    chaos = subprocess.Popen(
        [sys.executable, "-m", "soundscape", "chaos", "--chunks", "400", "--kills", "10",
         "--kinds", "worker,sink,drift", "--speed", "10", "--postgres-outage", "20",
         "--offline-minutes", "5", "--seed", "3",
         "--drain-timeout", "120", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = chaos.communicate(timeout=520)
    except subprocess.TimeoutExpired:
        chaos.send_signal(signal.SIGTERM)  # it stops its services and processes first
        out, err = chaos.communicate(timeout=60)
        raise AssertionError(f"the chaos run took too long:\n{err[-4000:]}") from None
    assert out, err[-4000:]
    report = json.loads(out)
    print(json.dumps({k: report[k] for k in ("counts", "faults_by_kind", "recovery_by_service",
                                             "offline_station", "drift_windows", "seconds")},
                     indent=1))
    assert chaos.returncode == 0 and report["ok"], report["problems"]
    counts = report["counts"]
    assert counts["chunks_expected"] == 400 and counts["stored"] == 400
    assert counts["missing"] == 0 and counts["duplicated"] == 0
    assert counts["results_in_topic"] == 400 and counts["unexpected_results"] == 0
    assert report["dead_letters"]["count"] == 0
    kinds = report["faults_by_kind"]
    assert all(kinds.get(k, 0) >= 1 for k in ("worker", "sink", "drift", "postgres",
                                               "station_offline")), kinds
    assert sum(kinds.values()) >= 12
    assert len(report["faults"]) == sum(kinds.values()) - kinds["station_offline"]
    assert all(f["recovery_s"] is not None for f in report["faults"]), report["faults"]
    offline = report["offline_station"]
    assert offline["spooled_while_offline"] == 30 and offline["in_order"] and offline["abutting"]
    assert offline["chunks_in_topic"] == 100 and offline["duplicated"] == 0
    drift = report["drift_windows"]
    assert drift["expected"] > 0 and drift["missing"] == 0, drift
    assert not report["state_dir"], "a run with no problem removes its state folder"
