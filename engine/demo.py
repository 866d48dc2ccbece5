"""``journey demo``: a local broker and Redis, a worker, the simulator, a live summary.

Everything runs on loopback and stops on Ctrl-C or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.journey import resolve_model
from engine.local.kafka import LocalKafka
from engine.local.ports import free_port, terminate_process_group
from engine.local.redis import LocalRedis
from engine.metrics import processed_events, scrape
from engine.redis_store import ProfileStore
from engine.settings import Settings
from engine.simulate import SimStats, publish

WORKDIR = Path(".journey-demo")


@dataclass
class Tally:
    stages: Counter[str] = field(default_factory=Counter)
    changes: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    processed: int = 0
    last_customer: str = ""


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    WORKDIR.mkdir(exist_ok=True)
    print("starting a local Apache Kafka broker and redis-server ...", flush=True)
    began = time.monotonic()
    kafka = LocalKafka(log_path=WORKDIR / "kafka.log")
    redis = LocalRedis()
    worker: subprocess.Popen[bytes] | None = None
    try:
        kafka.start()
        redis.start()
        print(
            f"broker {kafka.bootstrap} and redis {redis.url} up in {time.monotonic() - began:.1f}s",
            flush=True,
        )
        settings = settings.with_(
            kafka_bootstrap=kafka.bootstrap,
            redis_url=redis.url,
            app_id="journey-demo",
            web_port=free_port(),
            data_dir=str(WORKDIR / "data"),
            partitions=settings.partitions or 4,
        )
        asyncio.run(create_topics(settings))
        log = (WORKDIR / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker"],
            env={**os.environ, **settings.to_env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(f"worker pid {worker.pid}, log {WORKDIR / 'worker.log'}", flush=True)
        asyncio.run(_live(settings, args, worker))
        return 0
    finally:
        if worker is not None:
            terminate_process_group(worker, 20.0, "worker")
        redis.stop()
        kafka.stop()
        print("stopped broker, redis and worker", flush=True)


async def _live(
    settings: Settings, args: argparse.Namespace, worker: subprocess.Popen[bytes]
) -> None:
    catalog = Catalog(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tally, sim = Tally(), SimStats()
    consumer = AIOKafkaConsumer(
        catalog.name(Catalog.STAGE_CHANGES),
        catalog.name(Catalog.DEAD_LETTER),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    tasks = [
        asyncio.create_task(_traffic(settings, args, sim, stop)),
        asyncio.create_task(_consume(consumer, catalog, tally)),
        asyncio.create_task(_progress(settings, tally)),
    ]
    started = loop.time()
    order = _stage_order(settings)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)
            elapsed = loop.time() - started
            print(_render(order, tally, sim, elapsed), flush=True)
            if worker.poll() is not None:
                print(f"the worker exited with code {worker.returncode}; see its log", flush=True)
                break
            if args.duration and elapsed >= args.duration:
                stop.set()
        print("draining: waiting for the worker to catch up ...", flush=True)
        await _drain(tally, sim, timeout=30.0)
        print(_render(order, tally, sim, loop.time() - started, final=True), flush=True)
        print(await _redis_profile(settings, tally.last_customer), flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()


async def _traffic(
    settings: Settings, args: argparse.Namespace, sim: SimStats, stop: asyncio.Event
) -> None:
    topic = Catalog(settings).name(Catalog.TOUCHPOINTS)
    seed = args.seed
    while not stop.is_set():
        await publish(
            settings.kafka_bootstrap,
            topic,
            customers=args.customers,
            rate=args.rate,
            seed=seed,
            bad_ratio=0.01,
            duplicate_ratio=0.01,
            stats=sim,
            should_stop=stop.is_set,
        )
        seed += 1


async def _consume(consumer: AIOKafkaConsumer, catalog: Catalog, tally: Tally) -> None:
    dead_letter = catalog.name(Catalog.DEAD_LETTER)
    async for msg in consumer:
        if msg.topic == dead_letter:
            reason = dict(msg.headers).get("journey.reason", b"?").decode()
            tally.dead_letters[reason] += 1
            continue
        change = orjson.loads(msg.value)
        if change["from_stage"]:
            tally.stages[change["from_stage"]] -= 1
        tally.stages[change["to_stage"]] += 1
        tally.changes += 1
        tally.last_customer = change["customer_id"]


async def _progress(settings: Settings, tally: Tally) -> None:
    """How many touchpoints the worker is done with, from its /metrics page."""
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    while True:
        await asyncio.sleep(1.0)
        try:
            page = await asyncio.to_thread(scrape, url)
        except OSError:
            continue  # the worker's web server may not be up yet; asked again next second
        tally.processed = processed_events(page)


async def _drain(tally: Tally, sim: SimStats, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last, quiet = -1, 0
    while time.monotonic() < deadline:
        published = sim.sent + sim.duplicates + sim.bad
        if tally.processed >= published:
            return
        quiet = quiet + 1 if tally.processed == last else 0
        if quiet >= 10:
            return
        last = tally.processed
        await asyncio.sleep(0.5)


async def _redis_profile(settings: Settings, customer: str) -> str:
    """The read model at work: the profile of the customer who moved last, from Redis."""
    if not customer:
        return "  no stage change yet, so no customer profile to read from Redis"
    store = ProfileStore.from_settings(settings)
    try:
        profile = await store.get(customer)
    finally:
        await store.stop()
    if profile is None:
        return f"  Redis has no profile for {customer} yet"
    shown = ("stage", "stage_entered_at", "stage_rule", "events", "touches", "last_seen")
    fields = "  ".join(
        f"{name}={orjson.dumps(profile.get(name)).decode()}"
        if isinstance(profile.get(name), dict)
        else f"{name}={profile.get(name)}"
        for name in shown
    )
    return f"  Redis profile {store.key(customer)}:\n    {fields}"


def _stage_order(settings: Settings) -> list[str]:
    model = resolve_model(settings.model)
    return [*model.path, *(s for s in model.stages if s not in model.path)]


def _render(
    order: list[str], tally: Tally, sim: SimStats, elapsed: float, final: bool = False
) -> str:
    total = max(1, sum(max(0, tally.stages[s]) for s in order))
    published = sim.sent + sim.duplicates + sim.bad
    lines = [
        "",
        f"{'FINAL' if final else 'LIVE'}  t={elapsed:6.1f}s  published={published} "
        f"({published / max(elapsed, 1e-9):.0f}/s)  processed={tally.processed} "
        f"({tally.processed / max(elapsed, 1e-9):.0f}/s)  stage changes={tally.changes}  "
        f"dead letters={sum(tally.dead_letters.values())}",
        f"  {'stage':<14}{'customers':>10}",
    ]
    for stage in order:
        count = max(0, tally.stages[stage])
        bar = "#" * round(40 * count / total)
        lines.append(f"  {stage:<14}{count:>10}  {bar}")
    if final and tally.processed < published:
        lines.append(
            f"  the worker was {published - tally.processed} records behind when the demo stopped"
        )
    if final and tally.dead_letters:
        reasons = ", ".join(f"{k}={v}" for k, v in tally.dead_letters.most_common())
        lines.append(f"  dead-letter reasons: {reasons}")
    return "\n".join(lines)
