"""The engine as a contender: its settings, its worker processes, and the latency run."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from engine.catalog import Catalog
from engine.local.ports import free_port
from engine.settings import Settings
from engine.simulate import LAST_START_BEFORE_NOW, encode, journeys
from engine.worker.sink import Sink
from tests.bench.kafka_util import MetricsProgress
from tests.bench.latency_phases import by_phase, phase_starts
from tests.bench.procs import CpuSnapshot, Proc
from tests.bench.stage_reader import READY, Row, load

#: The latency run's sender wakes up this often and sends what is due: a producer
#: lingering 5 ms, the Java client's default since Kafka 4.0. (At 2 ms the sender
#: took a third more CPU on the 2 cores it shares with the worker and the broker.)
PACE_TICK_S = 0.005

#: Beyond this the latency input would not fit comfortably in memory.
MAX_LATENCY_EVENTS = 2_000_000


@dataclass(frozen=True)
class EngineSetup:
    bootstrap: str
    redis_url: str
    partitions: int
    data_root: Path
    log_root: Path
    commit_interval: float
    guarantee: str = "at_least_once"


def capabilities_on() -> dict[str, bool]:
    """Every boolean switch the settings have for an optional capability (``*_enabled``)."""
    return {
        f.name: True
        for f in fields(Settings)
        if str(f.type) == "bool" and f.name.endswith("_enabled")
    }


def engine_settings(
    setup: EngineSetup, app_id: str, touchpoints: str, *, store: str = "memory://", node: str = ""
) -> Settings:
    """The saas preset with every capability that exists switched on."""
    settings = Settings().with_(
        kafka_bootstrap=setup.bootstrap,
        redis_url=setup.redis_url,
        redis_prefix=f"{app_id}:",  # each run its own profiles
        app_id=app_id,
        topic_prefix=f"{app_id}.",
        touchpoints_topic=touchpoints,
        partitions=setup.partitions,
        model="saas",
        store=store,
        data_dir=str(setup.data_root / f"{app_id}{node}"),
        web_host="127.0.0.1",
        web_port=free_port(),
        processing_guarantee=setup.guarantee,
        log_level="info",
    )
    return settings.with_(**capabilities_on())


def engine_proc(setup: EngineSetup, settings: Settings, name: str) -> Proc:
    env = {**settings.to_env(), "BROKER_COMMIT_INTERVAL": str(setup.commit_interval)}
    return Proc(name, ["-m", "engine.cli", "worker"], env, setup.log_root / f"{name}.log")


def metrics_url(settings: Settings) -> str:
    return f"http://{settings.web_host}:{settings.web_port}/metrics"


def engine_progress(settings: list[Settings]) -> MetricsProgress:
    """Touchpoints the workers are done with (their /metrics), not the input offsets."""
    return MetricsProgress([metrics_url(s) for s in settings], settings[0].app_id)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of the samples (``q`` in 0..1)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


#: Where an event's latency goes, in the order of :func:`latency_parts`.
LATENCY_PARTS = ("to_worker_s", "in_worker_s", "to_reader_s")


def latency_parts(samples: Sequence[tuple[float, ...]], p99: float) -> dict[str, Any]:
    """Where the time of the samples goes. A sample is ``(latency, to_worker,
    in_worker, to_reader)``: published to the worker starting to apply the event's
    partition batch (``processed_at``), from there to the stage change's record
    timestamp (the worker handing it to its producer), from there to the benchmark
    receiving it. The parts come from wall clocks in milliseconds (``processed_at``,
    the record timestamp): each is precise to about a millisecond.

    Returns each part's p50 and p99, and the mean of each part over the samples at
    or above ``p99`` (the slowest 1 %: where the tail's time goes)."""
    if not samples:
        raise ValueError("no samples")
    tail = [s for s in samples if s[0] >= p99]
    out: dict[str, Any] = {}
    for i, name in enumerate(LATENCY_PARTS, start=1):
        values = [s[i] for s in samples]
        out[name] = {
            "p50": round(percentile(values, 0.50), 4),
            "p99": round(percentile(values, 0.99), 4),
            "slowest_1pct_mean": round(sum(s[i] for s in tail) / len(tail), 4),
        }
    return out


#: The latency input's journeys start over this span, many times a journey's length
#: (most end within 30 days), so that after its first few percent the traffic mixes
#: customers at every stage in steady proportions.
STEADY_SPAN = timedelta(days=480)

#: Simulated events per customer before the cut (about 10.4); a little fewer are
#: asked for, so that the cut input has the events wanted.
_EVENTS_PER_CUSTOMER = 8


def latency_input(
    events: int, seed: int, now: datetime, live_rate: float | None = None
) -> list[tuple[bytes, bytes, str]]:
    """``events`` events of a steady customer population, in time order.

    The journeys start over :data:`STEADY_SPAN` and the input ends when the last of
    them starts: a real stream of touchpoints holds new visitors, trials, renewals
    and cancellations side by side, whereas whole journeys of customers who all
    start together would end the input with a burst of their later, costlier
    events (renewals, cancellations, survey answers, which fire triggers). Only its
    first few percent, while the population builds up, has fewer of those.

    Stamped with their journey times (the months before ``now``: a backfill, whose
    wall-clock timers are all due at once), or with ``live_rate`` as they will be
    published at that rate from ``now`` on: live traffic, each customer's journey
    compressed into the run (its timers due days later)."""
    customers = max(5, -(-events // _EVENTS_PER_CUSTOMER))
    while True:
        out = _steady(events, customers, seed, now, live_rate)
        if len(out) == events:
            return out
        customers *= 2  # a small population happened to have fewer events


def _steady(
    events: int, customers: int, seed: int, now: datetime, live_rate: float | None
) -> list[tuple[bytes, bytes, str]]:
    last = now - LAST_START_BEFORE_NOW
    rng = random.Random(seed + 1)
    out: list[tuple[bytes, bytes, str]] = []
    for at, customer, msg in journeys(customers, seed, now, span=STEADY_SPAN):
        if at > last or len(out) == events:
            break
        if live_rate is not None:
            at = now + timedelta(seconds=len(out) / live_rate)
        value = encode(at, msg, rng)
        out.append((customer.encode("utf-8"), value, orjson.loads(value)["messageId"]))
    return out


async def _publish(
    sink: Sink,
    topic: str,
    records: list[tuple[bytes, bytes, str]],
    rate: float,
    published: dict[str, float],
) -> None:
    """Send ``records`` at ``rate``, noting when each was handed over. Every tick
    sends what is due by then through the engine's sink (one record batch per
    partition): a sleep or a send per event costs the sender more CPU than the
    engine spends on the event, and a sender left behind catches up in a burst."""
    await sink.prepare([topic])
    pending = []
    began = time.monotonic()
    n = 0
    while n < len(records):
        due = min(len(records), int((time.monotonic() - began) * rate) + 1)
        now = time.monotonic()
        for key, value, message_id in records[n:due]:
            sink.add(topic, key, value)
            published[message_id] = now
        pending.append(await sink.send())
        n = due
        await asyncio.sleep(PACE_TICK_S)
    await asyncio.gather(*pending)


async def measure_latency(
    settings: Settings,
    procs: list[Proc],
    rate: float,
    seconds: float,
    seed: int,
    warmup_s: float = 0.0,
    live: bool = False,
    services: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Publish at ``rate`` events/s and time each stage change back to its event.

    ``live``: the events are stamped with the time they are published (see
    :func:`latency_input`); otherwise with their journey times months ago.

    The publish time is taken just before the record batch holding the event is
    handed to the producer; the change is timed when the stage-change reader
    (:mod:`tests.bench.stage_reader`, a process of its own) receives it, matched by
    ``cause.message_id``. Only events that change a stage give a sample. The first
    ``warmup_s`` of traffic is not sampled (a fresh worker's first writes to its
    new topic partitions); its worst latency is reported apart. ``services``: name
    and process id of the broker and redis-server when they run on this machine,
    for the cores busy meanwhile.
    """
    total_s = seconds + warmup_s
    if not 0 < rate * total_s <= MAX_LATENCY_EVENTS:
        raise ValueError(
            f"latency run of {rate:.1f} events/s for {total_s}s is out of range "
            f"(1 to {MAX_LATENCY_EVENTS:,} events): is the measured rate right?"
        )
    catalog = Catalog(settings)
    records = latency_input(
        int(rate * total_s), seed, datetime.now(UTC), live_rate=rate if live else None
    )
    published: dict[str, float] = {}
    stages = catalog.name(Catalog.STAGE_CHANGES)
    log_dir = procs[0].log_path.parent
    found = log_dir / f"{settings.app_id}-stage-changes.json"
    found.unlink(missing_ok=True)
    reader = Proc(
        f"{settings.app_id}-stage-reader",
        [
            "-m",
            "tests.bench.stage_reader",
            settings.kafka_bootstrap,
            stages,
            str(catalog[Catalog.STAGE_CHANGES].partitions),
            str(found),
        ],
        {},
        log_dir / f"{settings.app_id}-stage-reader.log",
        ready_line=READY,
    ).start()
    sink = Sink(settings)
    try:
        await asyncio.to_thread(reader.wait_ready, 60.0)
        await sink.start()
    except BaseException:
        reader.stop()
        raise
    # The prepared input is kept out of the collector's sight (as core_speed does):
    # a full collection walking it paused this process and its sender for 80 ms at
    # a time, and the pause was counted as the engine's.
    gc.collect()
    gc.freeze()
    cpu: list[CpuSnapshot] = []
    mine = [os.getpid(), reader.pid]
    named = dict(services or {})
    watched = [*mine, *named.values()]
    try:
        wall_before = time.time() - time.monotonic()
        began = time.monotonic()
        loop = asyncio.get_running_loop()
        # A snapshot at the start of each phase of the measured window, one at its end.
        snaps = [
            loop.call_later(at - began, lambda: cpu.append(CpuSnapshot(procs, also=watched)))
            for at in phase_starts(began + warmup_s, seconds)
        ]
        topic = catalog.name(Catalog.TOUCHPOINTS)
        await _publish(sink, topic, records, rate, published)
        publish_s = time.monotonic() - began
        for snap in snaps:
            snap.cancel()
        cpu.append(CpuSnapshot(procs, also=watched))
        async with engine_progress([settings]) as progress:
            caught_up = await progress.wait_for(len(records), procs, timeout=120 + total_s * 4)
        drain_s = caught_up - began - publish_s
        await asyncio.sleep(1.0)  # the last changes are sent before the commit; let them in
    finally:
        reader.stop()
        await sink.stop()
        gc.unfreeze()
    if not found.exists():
        raise RuntimeError(f"the stage-change reader wrote nothing:\n{reader.log()[-4000:]}")
    # The worker's stamps are on the wall clock, which NTP may move during the run
    # (the latency itself is on the monotonic clock): the parts use the mean of the
    # offsets before and after, and the report says how far it moved.
    wall_after = time.time() - time.monotonic()
    timed = match(published, load(found), (wall_before + wall_after) / 2)
    measured_from = began + warmup_s
    measured = [t for t in timed if t[0] >= measured_from]
    samples = [t[1] for t in measured]
    warmup = [t[1] for t in timed if t[0] < measured_from]
    if not samples:
        raise RuntimeError("no stage change came back during the latency run")
    p99 = percentile(samples, 0.99)
    return {
        "p50_s": percentile(samples, 0.50),
        "p99_s": p99,
        "max_s": max(samples),
        "samples": len(samples),
        "parts": latency_parts([t[1:] for t in measured], p99),
        "wall_clock_moved_s": round(wall_after - wall_before, 4),
        "cores": _cores(cpu, len(procs), len(mine), list(named)),
        "phases": by_phase([t[:2] for t in measured], cpu, len(procs), percentile),
        "warmup_s": warmup_s,
        "warmup_samples": len(warmup),
        "warmup_max_s": max(warmup, default=0.0),
        "events": len(records),
        "live": live,
        "target_rate_eps": rate,
        "achieved_rate_eps": len(records) / publish_s,
        "publish_s": publish_s,
        # From the last publish to the group committing everything: about one commit
        # interval when the worker kept up, more when a backlog built up.
        "drain_s": drain_s,
    }


def match(
    published: dict[str, float], rows: Sequence[Row], wall: float
) -> list[tuple[float, float, float, float, float]]:
    """``(published, latency, to worker, in worker, to reader)`` of every change
    whose cause was published (see :func:`latency_parts`); ``wall`` is the wall
    clock minus the monotonic one, for the worker's wall-clock stamps."""
    timed = []
    for message_id, received, processed_at, timestamp_ms in rows:
        sent = published.get(message_id or "")
        if sent is None or processed_at is None:
            continue
        processed = _epoch(processed_at) - wall
        handed = timestamp_ms / 1000 - wall
        parts = (processed - sent, handed - processed, received - handed)
        timed.append((sent, received - sent, *parts))
    return timed


def _epoch(stamp: str) -> float:
    """An ISO 8601 UTC time (``...Z``, as the engine writes) in seconds since the epoch."""
    return datetime.fromisoformat(stamp).timestamp()


def _cores(
    snapshots: list[CpuSnapshot], workers: int, bench: int, services: Sequence[str]
) -> dict[str, float] | None:
    """Cores busy on average after the warm-up until the last publish: the first
    ``workers`` processes of the snapshots, the next ``bench`` (the benchmark's: this
    one, the sender, and the stage-change reader), each of ``services`` (the processes
    after those), the whole machine, and the rest (anything else running; the broker
    and redis-server when not named)."""
    if len(snapshots) < 2:
        return None
    per_proc, machine = snapshots[-1].cores_since(snapshots[0])
    worker = sum(per_proc[:workers])
    ours = sum(per_proc[workers : workers + bench])
    named = dict(zip(services, per_proc[workers + bench :], strict=True))
    return {
        "workers": round(worker, 3),
        "benchmark_process": round(ours, 3),
        **{name: round(cores, 3) for name, cores in named.items()},
        "machine": round(machine, 3),
        "others": round(max(0.0, machine - worker - ours - sum(named.values())), 3),
    }
