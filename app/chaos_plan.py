"""What a chaos run will do, decided up front from its seed: which faults, when, for how long.

Deciding everything before the run starts makes a run repeatable (the same seed gives
the same plan, printed with the results) and lets the plan be checked without a cluster.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

KILL_KINDS = ("worker", "sink", "drift", "broker")
#: Pause before a killed process is started again (s): long enough for the group or the
#: quorum to notice, short like a supervisor's restart.
PAUSES_S = {"worker": (1.0, 4.0), "sink": (1.0, 4.0), "drift": (1.0, 4.0), "broker": (4.0, 10.0)}


@dataclass(frozen=True)
class Fault:
    at_s: float  # after the stations start
    kind: str  # worker, sink, drift, broker, postgres
    target: int  # which worker / sink / broker (1-based); 1 for drift and postgres
    pause_s: float  # down for this long, then started again

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """Part of the offline station's recording: `chunks` from `first` on, uplink up or not."""

    first: int
    chunks: int
    online: bool


def kill_mix(kills: int, kinds: tuple[str, ...] = KILL_KINDS) -> dict[str, int]:
    """How many kills of each kind: about a fifth brokers, a sixth the drift app, the rest
    shared by workers and sinks; at least one of each chosen kind once there are enough
    kills. Kinds not chosen get none."""
    if kills < 0:
        raise ValueError("kills must be >= 0")
    unknown = set(kinds) - set(KILL_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be among {', '.join(KILL_KINDS)}, got {kinds}")
    chosen = [kind for kind in KILL_KINDS if kind in kinds]
    mix = dict.fromkeys(KILL_KINDS, 0)
    if kills < len(chosen):
        for index, kind in enumerate(chosen):
            mix[kind] = int(index < kills)
        return mix
    for kind, share in (("broker", 0.2), ("drift", 0.15)):
        if kind in chosen:
            mix[kind] = max(1, round(kills * share))
    takers = [k for k in ("worker", "sink") if k in chosen] or [
        k for k in ("broker", "drift") if k in chosen]
    for index in range(kills - mix["broker"] - mix["drift"]):
        mix[takers[index % len(takers)]] += 1
    return mix


def plan_faults(seed: int, kills: int, duration_s: float, *, workers: int = 2, sinks: int = 2,
                brokers: int = 3, postgres_outage_s: float = 60.0,
                kinds: tuple[str, ...] = KILL_KINDS) -> list[Fault]:
    """Kills at random moments in the middle 75 % of the input, and one PostgreSQL outage
    starting in its first half. Broker kills are spread so that each broker is back before
    the next goes down (the cluster keeps its quorum): they get slots of their own."""
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    rng = random.Random(seed)
    mix = kill_mix(kills, kinds)
    early, late = 0.1 * duration_s, 0.85 * duration_s
    faults: list[Fault] = []
    counts = {"worker": workers, "sink": sinks, "drift": 1}
    for kind in ("worker", "sink", "drift"):
        for _ in range(mix[kind]):
            faults.append(Fault(round(rng.uniform(early, late), 1), kind,
                                rng.randint(1, counts[kind]), round(rng.uniform(*PAUSES_S[kind]), 1)))
    slot = (late - early) / max(1, mix["broker"])
    for index in range(mix["broker"]):
        start = early + index * slot
        faults.append(Fault(round(rng.uniform(start, start + slot * 0.5), 1), "broker",
                            rng.randint(1, brokers), round(rng.uniform(*PAUSES_S["broker"]), 1)))
    if postgres_outage_s > 0:
        faults.append(Fault(round(rng.uniform(0.2 * duration_s, 0.5 * duration_s), 1),
                            "postgres", 1, postgres_outage_s))
    return sorted(faults, key=lambda f: (f.at_s, f.kind, f.target))


def offline_segments(chunks: int, offline_chunks: int) -> list[Segment]:
    """The offline station records a fifth of its chunks online, then `offline_chunks`
    with its uplink down (into its spool), then the rest online while the spool drains."""
    offline = min(offline_chunks, max(0, chunks - 2))
    if offline <= 0:
        return [Segment(0, chunks, True)]
    before = max(1, (chunks - offline) // 5)
    after = chunks - offline - before
    segments = [Segment(0, before, True), Segment(before, offline, False)]
    if after > 0:
        segments.append(Segment(before + offline, after, True))
    return segments


def chunks_per_station(total: int, stations: int) -> list[int]:
    """`total` chunks shared as evenly as possible (the first stations take the rest)."""
    if stations < 1 or total < stations:
        raise ValueError(f"{total} chunks cannot be shared by {stations} stations")
    base, extra = divmod(total, stations)
    return [base + (1 if i < extra else 0) for i in range(stations)]
