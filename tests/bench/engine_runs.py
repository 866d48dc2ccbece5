"""The engine as a contender: its settings, its worker processes, and the latency run."""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from engine.catalog import Catalog
from engine.local.ports import free_port
from engine.settings import Settings
from engine.simulate import encode, journeys
from engine.worker.sink import Sink
from tests.bench.kafka_util import MetricsProgress
from tests.bench.procs import Proc

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


def latency_input(
    events: int, seed: int, now: datetime, live_rate: float | None = None
) -> list[tuple[bytes, bytes, str]]:
    """Whole journeys of enough customers for about ``events`` events, in time order.

    Stamped with their journey times (the weeks before ``now``: a backfill, whose
    wall-clock timers are all due at once), or with ``live_rate`` as they will be
    published at that rate from ``now`` on: live traffic, each customer's journey
    compressed into the run (its timers due days later)."""
    customers = max(5, round(events / 10))
    rng = random.Random(seed + 1)
    out: list[tuple[bytes, bytes, str]] = []
    for n, (at, customer, msg) in enumerate(journeys(customers, seed, now)):
        if live_rate is not None:
            at = now + timedelta(seconds=n / live_rate)
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


async def _positioned(consumer: AIOKafkaConsumer, partitions: int, timeout: float = 30.0) -> None:
    """Wait until the consumer has every partition and a position in each: the
    first samples must not wait for the measuring consumer's own start."""
    deadline = time.monotonic() + timeout
    while len(consumer.assignment()) < partitions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stage-change consumer got no assignment in {timeout}s")
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)


async def measure_latency(
    settings: Settings,
    procs: list[Proc],
    rate: float,
    seconds: float,
    seed: int,
    warmup_s: float = 0.0,
    live: bool = False,
) -> dict[str, Any]:
    """Publish at ``rate`` events/s and time each stage change back to its event.

    ``live``: the events are stamped with the time they are published (see
    :func:`latency_input`); otherwise with their journey times weeks ago.

    The publish time is taken just before the record batch holding the event is
    handed to the producer; the change is timed when the consumer of
    ``journey.stage-changes`` receives it, matched by ``cause.message_id``. Only
    events that change a stage give a sample. The first ``warmup_s`` of traffic
    is not sampled (a fresh worker's first writes to each new topic partition
    wait for the broker to create its log); its worst latency is reported apart.
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
    timed: list[tuple[float, float]] = []  # (published, latency)
    consumer = AIOKafkaConsumer(
        catalog.name(Catalog.STAGE_CHANGES),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    sink = Sink(settings)
    await consumer.start()
    await sink.start()
    await _positioned(consumer, catalog[Catalog.STAGE_CHANGES].partitions)
    done = asyncio.Event()

    async def collect() -> None:
        while not done.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            received = time.monotonic()
            for messages in batch.values():
                for message in messages:
                    cause = orjson.loads(message.value or b"{}").get("cause") or {}
                    sent = published.get(cause.get("message_id", ""))
                    if sent is not None:
                        timed.append((sent, received - sent))

    # The prepared input is kept out of the collector's sight (as core_speed does):
    # a full collection walking it paused this process, its sender and its
    # receiver, for 80 ms at a time, and the pause was counted as the engine's.
    gc.collect()
    gc.freeze()
    collector = asyncio.create_task(collect())
    try:
        began = time.monotonic()
        topic = catalog.name(Catalog.TOUCHPOINTS)
        await _publish(sink, topic, records, rate, published)
        publish_s = time.monotonic() - began
        async with engine_progress([settings]) as progress:
            caught_up = await progress.wait_for(len(records), procs, timeout=120 + total_s * 4)
        drain_s = caught_up - began - publish_s
        await asyncio.sleep(1.0)  # the last changes are sent before the commit; let them in
    finally:
        done.set()
        await collector
        await sink.stop()
        await consumer.stop()
        gc.unfreeze()
    measured_from = began + warmup_s
    samples = [latency for sent, latency in timed if sent >= measured_from]
    warm = [latency for sent, latency in timed if sent < measured_from]
    if not samples:
        raise RuntimeError("no stage change came back during the latency run")
    return {
        "p50_s": percentile(samples, 0.50),
        "p99_s": percentile(samples, 0.99),
        "max_s": max(samples),
        "samples": len(samples),
        "warmup_s": warmup_s,
        "warmup_samples": len(warm),
        "warmup_max_s": max(warm, default=0.0),
        "events": len(records),
        "live": live,
        "target_rate_eps": rate,
        "achieved_rate_eps": len(records) / publish_s,
        "publish_s": publish_s,
        # From the last publish to the group committing everything: about one commit
        # interval when the worker kept up, more when a backlog built up.
        "drain_s": drain_s,
    }
