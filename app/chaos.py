"""`soundscape chaos`: the whole pipeline on a three-broker cluster, under many faults at once.

A run has its own state folder (its own cluster, database and ports, nothing shared
with `infra up`), starts two workers, two sinks and the drift app as real processes,
and has stations record a synthetic archive at N x real time. Meanwhile, at moments its
seed decides (app.chaos_plan), it kills workers, sinks, the drift app and brokers with
SIGKILL and starts them again after a pause, stops PostgreSQL for a while, and cuts one
station's uplink for ten minutes of its audio. Then it waits for the pipeline to drain
and counts, from the topics and the database (app.chaos_audit), what was lost or
duplicated, and how long each service took to get its work back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soundscape.app import chaos_audit as audit
from soundscape.app.chaos_children import Child, Supervisor, base_env, get_health
from soundscape.app.chaos_plan import (
    KILL_KINDS,
    Fault,
    chunks_per_station,
    offline_segments,
    plan_faults,
)
from soundscape.infra.process import free_port
from soundscape.logs import get_logger
from soundscape.settings import (
    KafkaSettings,
    PostgresSettings,
    Settings,
    TopicSettings,
    settings_env,
)

log = get_logger(__name__)

T0 = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
BROKERS = 3
#: How long a service may take to report its work back after a restart before the run
#: records it as not recovered (it keeps going; the counts still say what happened).
RECOVERY_LIMIT_S = 120.0


@dataclass
class ChaosOptions:
    chunks: int = 2000
    stations: int = 4
    kills: int = 20
    seed: int = 1
    speed: float = 20.0
    postgres_outage_s: float = 60.0
    offline_minutes: float = 10.0
    workers: int = 2
    sinks: int = 2
    drain_timeout_s: float = 600.0
    keep: bool = False
    kinds: tuple[str, ...] = KILL_KINDS


@dataclass
class FaultRecord:
    fault: Fault
    started_s: float = 0.0  # when it was injected, after the stations started
    recovery_s: float | None = None  # restart -> work back (partitions, quorum, database)
    serving_s: float | None = None  # restart -> the process answers /healthz (its start-up)
    down_s: float | None = None  # kill -> work back
    during: list[str] = field(default_factory=list)  # other faults in progress at restart

    @property
    def rejoin_s(self) -> float | None:
        """The consumer group's part: serving /healthz -> partitions held again."""
        if self.recovery_s is None or self.serving_s is None:
            return None
        return max(0.0, self.recovery_s - self.serving_s)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.fault.kind, "target": self.fault.target,
                "planned_at_s": self.fault.at_s, "at_s": round(self.started_s, 1),
                "pause_s": self.fault.pause_s,
                "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
                "serving_s": None if self.serving_s is None else round(self.serving_s, 2),
                "rejoin_s": None if self.rejoin_s is None else round(self.rejoin_s, 2),
                "during": self.during,
                "down_s": None if self.down_s is None else round(self.down_s, 2)}


@dataclass
class ChaosReport:
    options: dict[str, Any]
    state_dir: str
    counts: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, Any] = field(default_factory=dict)
    drift_windows: dict[str, Any] = field(default_factory=dict)
    offline_station: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    recovery_by_service: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    unexpected_exits: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: only when draining stopped: the detections topic's ends and the readers' offsets
    stalled_readers: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **{k: v for k, v in vars(self).items()}}


def chaos_settings(base: Settings, run_dir: Path) -> Settings:
    """Settings of the run's own services: the base's, but local Kafka and PostgreSQL in
    `run_dir`, default topic names, and drift windows of a minute (so that a run of a few
    minutes closes many)."""
    from soundscape.app.demo import demo_drift_settings

    settings = base.model_copy(update={
        "state_dir": run_dir,
        "kafka": KafkaSettings(version=base.kafka.version, heap=base.kafka.heap),
        "postgres": PostgresSettings(),
        "topics": TopicSettings(),
    })
    drift = demo_drift_settings(settings).drift.model_copy(update={
        "data_dir": run_dir / "drift", "silence_check_interval_s": 5.0})
    return settings.model_copy(update={"drift": drift})


class ChaosRun:
    def __init__(self, base: Settings, options: ChaosOptions,
                 say: Callable[[str], None] = lambda _: None) -> None:
        if options.workers < 1 or options.sinks < 1 or options.stations < 1:
            raise ValueError("a chaos run needs at least one worker, sink and station")
        self.options = options
        self.say = say
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.run_dir = base.state_dir / "chaos" / f"{stamp}-seed{options.seed}"
        os.environ.setdefault("SOUNDSCAPE_CACHE_DIR", str(base.cache_dir))  # Kafka's jars
        self.settings = chaos_settings(base, self.run_dir)
        self.per_station = dict(zip(
            [f"chaos-{i + 1:02d}" for i in range(options.stations)],
            chunks_per_station(options.chunks, options.stations), strict=True))
        self.expected = audit.Expected(int(T0.timestamp()) * 10**9, self.per_station)
        self.offline_station = next(iter(self.per_station))
        self.segments = offline_segments(self.per_station[self.offline_station],
                                         round(options.offline_minutes * 6))
        self.duration_s = max(self.per_station.values()) * 10 / options.speed
        self.plan = plan_faults(options.seed, options.kills, self.duration_s,
                                workers=options.workers, sinks=options.sinks, brokers=BROKERS,
                                postgres_outage_s=options.postgres_outage_s,
                                kinds=options.kinds)
        self.children: dict[str, Child] = {}
        self.supervisor: Supervisor | None = None
        self.records: list[FaultRecord] = []
        self.offline: dict[str, Any] = {"station": self.offline_station}
        self.station_errors: list[str] = []
        self.station_procs: list[subprocess.Popen[bytes]] = []
        self.in_progress: set[str] = set()  # faults injected and not yet recovered from
        self._broker_lock = threading.Lock()
        self._target_locks: dict[str, threading.Lock] = {}
        self._t_start = 0.0

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> ChaosReport:
        from soundscape.infra import stack

        report = ChaosReport(options=vars(self.options) | {"duration_s": round(self.duration_s, 1),
                                                            "kinds": list(self.options.kinds)},
                             state_dir=str(self.run_dir))
        clock = time.monotonic()
        previous = _interrupt_on_sigterm()
        try:
            self._services_up()
            report.seconds["setup"] = round(time.monotonic() - clock, 1)
            self.say(f"services up in {report.seconds['setup']} s; {len(self.plan)} faults planned "
                     f"over {self.duration_s:.0f} s of input")
            self._t_start = time.monotonic()
            stations = [threading.Thread(target=self._station, args=(name, count),
                                         name=f"station-{name}", daemon=True)
                        for name, count in self.per_station.items()]
            faults = [threading.Thread(target=self._inject, args=(fault,), name=f"fault-{i}",
                                       daemon=True)
                      for i, fault in enumerate(self.plan)]
            for thread in [*stations, *faults]:
                thread.start()
            for thread in stations:
                thread.join()
            input_done = time.monotonic()
            report.seconds["input"] = round(input_done - self._t_start, 1)
            self.say(f"stations done after {report.seconds['input']} s; waiting for the faults")
            for thread in faults:
                thread.join()
            drained = self._wait_drained()
            report.seconds["time_to_drain"] = round(time.monotonic() - input_done, 1)
            self.say(f"drained: {drained}; {report.seconds['time_to_drain']} s after the input")
            if not drained:  # where the readers stand, before the audit's own reads
                report.stalled_readers = self._reader_positions()
            wanted_windows = self._wait_drift()
            report.seconds["run"] = round(time.monotonic() - self._t_start, 1)
            self._audit(report, wanted_windows)
        finally:
            for proc in list(self.station_procs):
                if proc.poll() is None:
                    proc.kill()
            self._stop_children()
            stack.down(self.settings)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            report.seconds["total"] = round(time.monotonic() - clock, 1)
            if report.ok and not self.options.keep:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                report.state_dir = ""
            elif self.run_dir.is_dir():  # kept: the report beside the logs it explains
                (self.run_dir / "report.json").write_text(
                    json.dumps(report.as_dict(), indent=2, default=str))
        return report

    def _services_up(self) -> None:
        from soundscape.app.bundle_registration import register
        from soundscape.infra import stack
        from soundscape.models import DEMO_BUNDLE
        from soundscape.sinks import migrate

        stack.up(self.settings, brokers=BROKERS)
        migrate.upgrade(self.settings)
        register(self.settings, DEMO_BUNDLE, store=False)
        env = base_env(settings_env(self.settings))
        logs = self.run_dir / "logs"
        for i in range(1, self.options.workers + 1):
            self._add(Child(f"worker-{i}", "worker", ["worker", "--worker-id", f"worker-{i}"],
                            env | {"SOUNDSCAPE_WORKER__BUNDLE": str(DEMO_BUNDLE),
                                   "SOUNDSCAPE_KAFKA__INSTANCE_ID": f"worker-{i}"}, logs))
        for i in range(1, self.options.sinks + 1):
            self._add(Child(f"sink-{i}", "sink", ["sink"],
                            env | {"SOUNDSCAPE_KAFKA__INSTANCE_ID": f"sink-{i}"}, logs))
        self._add(Child("drift-1", "drift", ["drift", "run"], env, logs))
        for child in self.children.values():
            child.start()
        self.supervisor = Supervisor(list(self.children.values()))
        self.supervisor.start()
        deadline = time.monotonic() + 240
        waiting = list(self.children.values())
        while waiting and time.monotonic() < deadline:
            waiting = [c for c in waiting if not self._working(c)]
            time.sleep(0.5)
        if waiting:
            raise RuntimeError("services did not start: " + "; ".join(
                f"{c.name}: {c.log_tail(1500)}" for c in waiting))

    def _add(self, child: Child) -> None:
        self.children[child.name] = child
        self._target_locks[child.name] = threading.Lock()

    @staticmethod
    def _working(child: Child) -> bool:
        """Has the service its share of the work: partitions held, or (drift) processing."""
        health = child.health()
        if child.kind == "worker":
            return bool(health.get("partitions"))
        if child.kind == "sink":
            return bool(health.get("assigned_partitions"))
        return bool(health.get("healthy")) and bool(health.get("partitions", 1))

    # ---- stations -----------------------------------------------------------------------
    def _station(self, name: str, count: int) -> None:
        segments = self.segments if name == self.offline_station else [
            offline_segments(count, 0)[0]]
        env = base_env(settings_env(self.settings))
        for segment in segments:
            start = T0.timestamp() + segment.first * 10
            args = ["station", "--station", name, "--source", "synthetic",
                    "--speed", f"{self.options.speed:g}",
                    "--start", datetime.fromtimestamp(start, UTC).isoformat(),
                    "--chunks", str(segment.chunks), "--json"]
            seg_env = env | {"SOUNDSCAPE_STATION__HEARTBEAT_INTERVAL_S": "5",
                             "SOUNDSCAPE_STATION__RETRY_BACKOFF_MAX_S": "2"}
            if segment.online:
                args += ["--drain-timeout", str(int(self.options.drain_timeout_s))]
            else:  # the uplink is down: nothing listens where the station sends
                args += ["--drain-timeout", "1"]
                seg_env |= {"SOUNDSCAPE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
            port = free_port()
            seg_env |= {"SOUNDSCAPE_METRICS_PORT": str(port)}
            log_path = self.run_dir / "logs" / f"{name}-{segment.first}.log"
            began = time.monotonic()
            with log_path.open("wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "soundscape", *args], env=seg_env,
                                        stdout=subprocess.PIPE, stderr=err)
                self.station_procs.append(proc)
                drained_at = None
                if name == self.offline_station and segment.online and segment.first > 0:
                    drained_at = self._watch_spool(proc, port)
                out, _ = proc.communicate()
            if proc.returncode != 0:
                self.station_errors.append(f"{name} segment {segment.first}: exit "
                                           f"{proc.returncode}, see {log_path}")
                continue
            result = json.loads(out)
            if name == self.offline_station and not segment.online:
                self.offline |= {"offline_at_s": round(began - self._t_start, 1),
                                 "offline_chunks": segment.chunks,
                                 "offline_s": round(time.monotonic() - began, 1),
                                 "spooled_while_offline": result.get("spool_depth")}
            elif drained_at is not None:
                self.offline["spool_drained_s"] = round(drained_at - began, 1)

    @staticmethod
    def _watch_spool(proc: Any, port: int) -> float | None:
        """When the restarted station's spool first runs empty (it drains oldest first)."""
        saw_backlog = False
        while proc.poll() is None:
            depth = get_health(port, timeout_s=1).get("spool_depth")
            if depth:
                saw_backlog = True
            elif depth == 0 and saw_backlog:
                return time.monotonic()
            time.sleep(0.2)
        return None

    # ---- faults -------------------------------------------------------------------------
    def _inject(self, fault: Fault) -> None:
        wait = self._t_start + fault.at_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        record = FaultRecord(fault)
        self.in_progress.add(f"{fault.kind}-{fault.target}")
        try:
            self._inject_one(fault, record)
        finally:
            self.in_progress.discard(f"{fault.kind}-{fault.target}")
        self.records.append(record)

    def _inject_one(self, fault: Fault, record: FaultRecord) -> None:
        if fault.kind == "broker":
            with self._broker_lock:  # one broker down at a time: the quorum stays
                self._broker_fault(record)
        elif fault.kind == "postgres":
            self._postgres_fault(record)
        else:
            child = self.children[f"{fault.kind}-{fault.target}"]
            with self._target_locks[child.name]:
                self._process_fault(child, record)

    def _now(self) -> float:
        return time.monotonic() - self._t_start

    def _process_fault(self, child: Child, record: FaultRecord) -> None:
        assert self.supervisor is not None
        with self.supervisor.lock:
            record.started_s = self._now()
            killed = time.monotonic()
            child.kill()
        time.sleep(record.fault.pause_s)
        with self.supervisor.lock:
            child.start()
        restarted = time.monotonic()
        record.during = self._others(record)
        self.say(f"{record.started_s:6.1f} s  kill -9 {child.name}, back after "
                 f"{record.fault.pause_s} s")
        if self._until(lambda: bool(child.health())):
            record.serving_s = time.monotonic() - restarted
        if self._until(lambda: self._working(child)):
            record.recovery_s = time.monotonic() - restarted
            record.down_s = time.monotonic() - killed

    def _broker_fault(self, record: FaultRecord) -> None:
        from soundscape.infra.kafka.cluster import KafkaCluster

        cluster = KafkaCluster(self.settings, BROKERS)
        node = record.fault.target
        record.started_s = self._now()
        killed = time.monotonic()
        cluster.kill_node(node)
        self.say(f"{record.started_s:6.1f} s  kill -9 broker {node}, back after "
                 f"{record.fault.pause_s} s")
        time.sleep(record.fault.pause_s)
        restarted = time.monotonic()
        record.during = self._others(record)
        cluster.start_node(node)

        def healed() -> bool:
            try:
                health = cluster.health(timeout_s=3)
            except Exception:  # noqa: BLE001 - a broker still electing: ask again
                return False
            return (node in health["brokers_in_metadata"]
                    and health["under_replicated_partitions"] == 0)

        if self._until(healed, limit_s=240):
            record.recovery_s = time.monotonic() - restarted
            record.down_s = time.monotonic() - killed

    def _postgres_fault(self, record: FaultRecord) -> None:
        from soundscape.infra.postgres.cluster import PostgresCluster

        cluster = PostgresCluster(self.settings)
        record.started_s = self._now()
        stopped = time.monotonic()
        cluster.stop()
        self.say(f"{record.started_s:6.1f} s  PostgreSQL stopped for {record.fault.pause_s} s")
        time.sleep(record.fault.pause_s)
        restarted = time.monotonic()
        record.during = self._others(record)
        cluster.start()
        sinks = [c for c in self.children.values() if c.kind == "sink"]
        if self._until(lambda: all(c.health().get("database") == "up" for c in sinks)):
            record.recovery_s = time.monotonic() - restarted
            record.down_s = time.monotonic() - stopped

    def _others(self, record: FaultRecord) -> list[str]:
        return sorted(self.in_progress - {f"{record.fault.kind}-{record.fault.target}"})

    @staticmethod
    def _until(condition: Callable[[], bool], limit_s: float = RECOVERY_LIMIT_S) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    # ---- the end ------------------------------------------------------------------------
    def _wait_drained(self) -> bool:
        """Until every expected chunk is stored, or nothing new arrived for a while."""
        ids = list(self.expected.ids())
        stored, last_progress = 0, time.monotonic()
        while time.monotonic() - last_progress < self.options.drain_timeout_s:
            try:
                now = len(audit.stored_ids(self.settings, ids))
            except Exception:  # noqa: BLE001 - the database restarting: ask again
                now = stored
            if now >= len(ids):
                return True
            if now > stored:
                stored, last_progress = now, time.monotonic()
            time.sleep(1.0)
        return False

    def _reader_positions(self) -> dict[str, Any]:
        groups = [self.settings.sink.group_id, self.settings.drift.app_id]
        try:
            found = audit.reader_positions(self.settings, groups)
        except Exception as exc:  # noqa: BLE001 - a diagnosis never hides the report
            return {"error": f"{type(exc).__name__}: {exc}"}
        self.say(f"readers stalled: open transactions on partitions "
                 f"{found['open_transaction_partitions']}, behind: {found['behind_by_group']}")
        return found

    def _wait_drift(self, limit_s: float = 120.0) -> set[audit.Window] | None:
        """Until every expected drift window is stored (windows close as the last chunks
        pass); the expected ones, worked out once from the drained chunks."""
        deadline = time.monotonic() + limit_s
        wanted = None
        while time.monotonic() < deadline:
            try:
                if wanted is None:
                    wanted = audit.expected_drift_windows(self.settings, self.expected)
                if wanted <= audit.stored_drift_windows(self.settings, self.expected):
                    break
            except Exception:  # noqa: BLE001 - the database restarting: retried to the deadline
                pass
            time.sleep(2)
        return wanted

    def _audit(self, report: ChaosReport, wanted_windows: set[audit.Window] | None) -> None:
        report.counts = audit.result_counts(self.settings, self.expected)
        report.dead_letters = audit.dead_letters(self.settings)
        report.drift_windows = audit.drift_windows(self.settings, self.expected, wanted_windows)
        report.offline_station = self.offline | audit.spool_order(self.settings,
                                                                  self.offline_station)
        report.faults = [r.as_dict() for r in sorted(self.records, key=lambda r: r.started_s)]
        kinds = dict(Counter(fault.kind for fault in self.plan))
        kinds["station_offline"] = int(any(not s.online for s in self.segments))
        report.faults_by_kind = kinds
        for kind in sorted({r.fault.kind for r in self.records}):
            times = [r.recovery_s for r in self.records if r.fault.kind == kind]
            known = [t for t in times if t is not None]
            alone = [r.recovery_s for r in self.records if r.fault.kind == kind
                     and r.recovery_s is not None and not r.during]
            report.recovery_by_service[kind] = {
                "faults": len(times), "recovered": len(known),
                "median_s": round(statistics.median(known), 2) if known else None,
                "max_s": round(max(known), 2) if known else None,
                # restarts while no other fault was in progress
                "alone": len(alone),
                "alone_max_s": round(max(alone), 2) if alone else None}
            rejoins = [r.rejoin_s for r in self.records
                       if r.fault.kind == kind and r.rejoin_s is not None]
            if rejoins:  # processes: start-up apart, the group's part alone
                report.recovery_by_service[kind] |= {
                    "rejoin_median_s": round(statistics.median(rejoins), 2),
                    "rejoin_max_s": round(max(rejoins), 2)}
        report.unexpected_exits = {c.name: len(c.unexpected_exits)
                                   for c in self.children.values() if c.unexpected_exits}
        counts = report.counts
        if counts["missing"]:
            report.problems.append(f"{counts['missing']} chunks missing")
        if counts["duplicated"]:
            report.problems.append(f"{counts['duplicated']} duplicated")
        if report.dead_letters["count"]:
            report.problems.append(f"{report.dead_letters['count']} chunks dead-lettered")
        if report.drift_windows["missing"]:
            report.problems.append(f"{report.drift_windows['missing']} drift windows missing")
        offline = report.offline_station
        if not (offline["in_order"] and offline["abutting"]) or offline["duplicated"]:
            report.problems.append(f"the offline station's chunks are not each once in order: "
                                   f"{offline}")
        not_back = [r.as_dict() for r in self.records if r.recovery_s is None]
        if not_back:
            report.problems.append(f"{len(not_back)} faults not recovered from: {not_back}")
        report.problems += self.station_errors

    def _stop_children(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for child in self.children.values():
            child.stop(30)


def _interrupt_on_sigterm() -> Any:
    """SIGTERM ends the run like Ctrl-C: the run's processes and services are stopped."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
