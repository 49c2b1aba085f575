"""Rolling a model out while chunks flow (issue 20): a candidate trained here from a
manifest of labelled audio (`models train`: real recordings and synthetic), scored in
shadow beside the live bundle, promoted, a broken version refused, rolled back, all
through Kafka with one worker process that is never restarted.

Checked: every chunk scored exactly once on the live path (one result per chunk in the
topic, one row per chunk), each batch by one bundle, each partition's results switching
version in the order of the promotions (live, candidate, live), the broken version
never used and reported on /healthz, the candidate's shadow result for every chunk,
and the registry's record of who made which version active.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from soundscape.app.bundle_registration import register
from soundscape.bundle import MANIFEST
from soundscape.chunk_publisher import ChunkPublisher
from soundscape.database import database_url
from soundscape.infra.process import free_port
from soundscape.kafka_topics import TOPIC_FIELDS
from soundscape.messages import Detection, parse
from soundscape.settings import Settings
from soundscape.sinks import migrate
from soundscape.sinks.service import SinkService
from soundscape.sinks.shadow_writer import ShadowWriter
from soundscape.synthetic.chunks import generated_chunks
from topic_reader import read_messages

SOUNDSCAPE = [sys.executable, "-m", "soundscape"]
CHUNKS = 144
STATIONS = 3


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    pg = settings.postgres
    env = dict(os.environ) | {
        "SOUNDSCAPE_STATE_DIR": str(settings.state_dir),
        "SOUNDSCAPE_POSTGRES__DATABASE": pg.database,
        "SOUNDSCAPE_LOG_FORMAT": "json",
        "SOUNDSCAPE_WORKER__REGISTRY_POLL_S": "0.5",
        "SOUNDSCAPE_WORKER__BATCH_SIZE": "4",
    } | {f"SOUNDSCAPE_TOPICS__{name.upper()}": getattr(settings.topics, name)
         for name in TOPIC_FIELDS}
    for name, value in (("POSTGRES__URL", pg.url), ("POSTGRES__OWNER_URL", pg.owner_url)):
        if value is not None:
            env[f"SOUNDSCAPE_{name}"] = value.get_secret_value()
    if settings.kafka.bootstrap_servers:
        env["SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    return env | extra


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([*SOUNDSCAPE, *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _cli_register(env: dict[str, str], bundle: Path) -> tuple[Any, bool]:
    """`models register --json`, as an operator registers a bundle they trained."""
    from types import SimpleNamespace

    found = _cli(env, "models", "register", str(bundle))
    return SimpleNamespace(version=found["version"], location=found["location"]), found["new"]


def _rows(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url(settings)) as conn:
        return conn.execute(query).fetchall()


def _wait(condition: Callable[[], bool], what: str, alive: Callable[[], None],
          timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return json.loads(answer.read())
    except OSError as exc:
        body = getattr(exc, "read", None)
        return json.loads(body()) if body is not None else {}


def _broken_copy(source: Path, into: Path) -> Path:
    """The same bundle under a version of its own (registered fine, broken later)."""
    copy = into / "broken-bundle"
    shutil.copytree(source, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["version"] = "broken-1"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


def test_train_shadow_promote_refuse_and_roll_back_while_chunks_flow(
        kafka_settings: Settings, db_settings: Settings, tmp_path: Path,
        small_trained_bundle: tuple[Path, str]) -> None:
    """The candidate: `models train` on labelled real and synthetic audio (the session's
    small_trained_bundle, which the training tests check)."""
    from soundscape.models import DEMO_BUNDLE

    settings = kafka_settings.model_copy(update={"postgres": db_settings.postgres})
    migrate.upgrade(settings)
    trained = small_trained_bundle[0]
    live, _ = register(settings, DEMO_BUNDLE)
    candidate, _ = _cli_register(_env(settings), trained)
    broken, _ = register(settings, _broken_copy(Path(DEMO_BUNDLE), tmp_path))
    assert Path(candidate.location).parent == settings.state_dir / "model-store"
    (Path(broken.location) / "meta.onnx").write_bytes(b"not a graph")  # its stored copy rots
    env = _env(settings)
    assert _cli(env, "models", "promote", live.version, "--by", "tester")["changed"] is True

    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("follower", "shadow")}
    follower = subprocess.Popen(
        [*SOUNDSCAPE, "worker", "--follow", "--worker-id", "follow-1", "--metrics-port", str(port)],
        env=env, stdout=logs["follower"], stderr=subprocess.STDOUT)
    shadow = subprocess.Popen(
        [*SOUNDSCAPE, "worker", "--shadow", candidate.version, "--worker-id", "shadow-1",
         "--batch-size", "8"], env=env, stdout=logs["shadow"], stderr=subprocess.STDOUT)
    sink, shadow_sink = SinkService(settings), ShadowWriter(settings)
    threads = [threading.Thread(target=sink.run), threading.Thread(target=shadow_sink.run)]
    start = (time.time_ns() // 10**9 - 7200) // 10 * 10 * 10**9

    def publish() -> None:  # a steady flow, about 8 chunks a second
        publisher = ChunkPublisher(settings)
        for envelope, payload in generated_chunks(CHUNKS, STATIONS, start):
            publisher.publish(envelope, payload)
            publisher.flush()
            time.sleep(0.12)

    threads.append(threading.Thread(target=publish))

    def alive() -> None:
        for proc, name in ((follower, "follower"), (shadow, "shadow")):
            if proc.poll() is not None:
                logs[name].flush()
                raise AssertionError(f"{name} worker exited: "
                                     f"{(tmp_path / f'{name}.log').read_text()[-3000:]}")

    def stored(version: str) -> int:
        return _rows(settings, f"SELECT count(*) FROM chunks WHERE bundle_version = '{version}'")[0][0]

    try:
        for thread in threads:
            thread.start()
        _wait(lambda: stored(live.version) >= 24, "live results", alive)
        _cli(env, "models", "promote", candidate.version, "--by", "tester", "--reason", "shadow ok")
        _wait(lambda: stored(candidate.version) >= 12, "the candidate's results", alive)

        _cli(env, "models", "promote", broken.version, "--by", "tester")
        _wait(lambda: "broken-1" in (_health(port).get("bundle_error") or ""),
              "the broken bundle reported", alive)
        health = _health(port)
        assert health["bundle"] == candidate.version and health["healthy"] is True
        before = stored(candidate.version)
        _wait(lambda: stored(candidate.version) > before, "scoring on with the candidate", alive)

        back = _cli(env, "models", "rollback", "--by", "tester")
        assert (back["active"], back["previous"]) == (candidate.version, broken.version)
        back = _cli(env, "models", "rollback", "--by", "tester", "--reason", "test over")
        assert (back["active"], back["previous"]) == (live.version, candidate.version)
        _wait(lambda: _health(port).get("bundle") == live.version, "the switch back", alive)
        threads[-1].join(120)  # everything published
        _wait(lambda: sink.stats.stored >= CHUNKS, "every chunk stored", alive)
        _wait(lambda: shadow_sink.stats.stored >= CHUNKS, "every shadow result stored", alive)
        assert follower.poll() is None  # the same process throughout: never restarted
        follower.send_signal(signal.SIGTERM)
        shadow.send_signal(signal.SIGTERM)
        assert follower.wait(60) == 0 and shadow.wait(60) == 0
    finally:
        for proc in (follower, shadow):
            if proc.poll() is None:
                proc.kill()
        sink.request_stop()
        shadow_sink.request_stop()
        for thread in threads:
            thread.join(60)
        for log in logs.values():
            log.close()

    # Exactly once on the live path: one result per chunk in the topic, one row per chunk.
    results = [(m.partition(), m.offset(), parse(Detection, m.value()))
               for m in read_messages(settings, settings.topics.detections, expected=CHUNKS)]
    assert len(results) == CHUNKS
    assert len({d.chunk_id for _, _, d in results}) == CHUNKS
    assert {d.worker_id for _, _, d in results} == {"follow-1"}
    versions = {d.bundle_version for _, _, d in results}
    assert versions == {live.version, candidate.version}  # broken-1 never scored anything
    # Each batch by one bundle; each partition switches live -> candidate -> live.
    batches: dict[int, set[str]] = {}
    for _, _, d in results:
        batches.setdefault(d.timing.consumed_at, set()).add(d.bundle_version)
    assert all(len(v) == 1 for v in batches.values())
    for partition in {p for p, _, _ in results}:
        order = [d.bundle_version for p, _, d in sorted(results, key=lambda r: r[:2])
                 if p == partition]
        runs = [v for i, v in enumerate(order) if i == 0 or order[i - 1] != v]
        assert runs in ([live.version, candidate.version, live.version],
                        [live.version, candidate.version], [candidate.version, live.version]), runs
    assert _rows(settings, "SELECT count(*), count(DISTINCT chunk_id) FROM chunks") == \
        [(CHUNKS, CHUNKS)]
    assert _rows(settings, "SELECT bundle_version, count(*) FROM shadow_results GROUP BY 1") == \
        [(candidate.version, CHUNKS)]

    listed = {row["version"]: row for row in _cli(env, "models", "list")}
    assert [v for v, row in listed.items() if row["active"]] == [live.version]
    assert listed[live.version]["promoted_by"] == "tester"
    history = _cli(env, "models", "history")
    assert [(h["action"], h["version"]) for h in history] == [
        ("rollback", live.version), ("rollback", candidate.version),
        ("promote", broken.version), ("promote", candidate.version), ("promote", live.version)]
    compared = _cli(env, "models", "compare", live.version, candidate.version, "--since", "1d")
    assert compared["chunks"]["candidate"] == CHUNKS
    assert compared["chunks"]["both"] == compared["chunks"]["live"] == stored(live.version) > 0
    assert 0.0 <= compared["agreement"]["top_label"] <= 1.0
    from soundscape.bundle import load_bundle

    shadow_tops = {r[0] for r in _rows(settings, "SELECT DISTINCT top_label FROM shadow_results")}
    assert shadow_tops <= set(load_bundle(trained).labels)  # scored by the trained candidate
    _panel_shows_live_and_shadow(settings, {f"live {live.version}", f"live {candidate.version}",
                                            f"shadow {candidate.version}"})
    log = (tmp_path / "follower.log").read_text()
    assert "cannot load the promoted bundle; keeping the current one" in log
    assert log.count("bundle switched between batches") == 2


def _panel_shows_live_and_shadow(settings: Settings, expected: set[str]) -> None:
    """The Grafana panel's SQL, expanded as Grafana would, run as the read-only role."""
    from datetime import UTC, datetime, timedelta

    from soundscape.infra.grafana.dashboard_model import DRIFT
    from soundscape.infra.grafana.macros import QueryContext, expand

    panel = next(p for p in DRIFT.panels if p.title.startswith("Live vs shadow"))
    now = datetime.now(UTC)
    stations = [f"demo-{i:03d}" for i in range(STATIONS)]
    query = expand(panel.sql, QueryContext(now - timedelta(hours=4), now, timedelta(minutes=10),
                                           {"station": stations}))
    with psycopg.connect(database_url(settings, "reader")) as conn:
        cursor = conn.execute(query)
        assert [c.name for c in cursor.description or ()] == list(panel.columns)
        rows = cursor.fetchall()
    assert {row[1] for row in rows} == expected
    assert all(0.0 <= row[2] <= 1.0 for row in rows)
