"""The benchmark's timer phase: fire lag on the wall clock, memory with many pending timers.

Lag: a worker whose ``trial_stalled`` rule waits ``LAG_DURATION_S`` seconds gets
sign-ups stamped with the time they are published; every sign-up gives one
timer, due ``LAG_DURATION_S`` later, whose rule raises a trigger. A consumer of
``journey.trigger-decisions`` in this process takes, per decision caused by a
timer, the time it received it minus the timer's due time: from due to applied,
decided and readable downstream.

Memory: customers whose records all have a pending timer (due days ahead, so
none fires meanwhile) are written into a changelog; a worker recovers them and
rebuilds its timer index (its log says when, and how long it took); its VmRSS
is read then, minus a worker's with an empty table.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.journey import CustomerState
from engine.journey.state import to_ms
from engine.settings import Settings
from engine.worker.state_store import encode_state
from engine.worker.triggering import trigger_engine
from tests.bench.engine_runs import EngineSetup, engine_proc, engine_settings, percentile
from tests.bench.kafka_util import create_topic, produce_fast
from tests.bench.procs import Proc
from tests.bench.recovery import changelog_topic, template_states

LAG_DURATION_S = 3
#: A pending timer of the memory run is due at least this far ahead.
MEMORY_DUE_AFTER = timedelta(days=2)
REBUILT = re.compile(
    r"timer index rebuilt for partitions \[[\d, ]*\]: (\d+) pending timers from (\d+) "
    r"customers \(\d+ keys\) in ([\d.]+)s, ([\d.]+)s of it busy \(([\d.]+)s per 100k"
)


def pending_templates(seed: int, now: datetime) -> list[CustomerState]:
    """Simulated customers whose next timer is due after ``now + MEMORY_DUE_AFTER``."""
    engine = trigger_engine(Settings())
    later = to_ms(now + MEMORY_DUE_AFTER)
    found = []
    for state in template_states(2_000, seed):
        timer = engine.next_timer(state)
        if timer is not None and timer.due_ms > later:
            found.append(state)
    if not found:  # pragma: no cover - the simulator always leaves some
        raise RuntimeError("no simulated customer has a pending timer")
    return found


# ---------------------------------------------------------------------- lag


async def measure_lag(
    setup: EngineSetup, app_id: str, timers: int, seconds: float, log_name: str
) -> dict[str, Any]:
    settings = lag_settings(setup, app_id)
    await create_topics(settings)
    catalog = Catalog(settings)
    proc = engine_proc(setup, settings, log_name).start()
    consumer = AIOKafkaConsumer(
        catalog.name(Catalog.DECISIONS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=0)
    lags: list[float] = []
    try:
        await asyncio.to_thread(proc.wait_ready)
        await consumer.start()
        await producer.start()
        collector = asyncio.create_task(_collect(consumer, lags, timers))
        began = time.monotonic()
        sends = []
        for n in range(timers):
            ahead = began + n * seconds / timers - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            customer = f"lag-{n}"
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            msg = {"type": "track", "event": "Signed Up", "userId": customer,
                   "messageId": f"{app_id}-{n}", "timestamp": stamp}  # fmt: skip
            topic = catalog.name(Catalog.TOUCHPOINTS)
            sends.append(await producer.send(topic, orjson.dumps(msg), key=customer.encode()))
        await asyncio.gather(*sends)
        with contextlib.suppress(TimeoutError):  # fewer than sent: said below
            await asyncio.wait_for(collector, timeout=60 + LAG_DURATION_S)
        proc.check_alive()
    finally:
        await producer.stop()
        await consumer.stop()
        code = proc.stop()
    if len(lags) < timers:
        raise RuntimeError(f"only {len(lags)} of {timers} timers fired: {proc.log_path}")
    return {
        "p50_s": percentile(lags, 0.50),
        "p99_s": percentile(lags, 0.99),
        "max_s": max(lags),
        "timers": len(lags),
        "publish_s": seconds,
        "duration_s": LAG_DURATION_S,
        "exit_code": code,
        "log": str(proc.log_path),
    }


def lag_settings(setup: EngineSetup, app_id: str) -> Settings:
    return engine_settings(setup, app_id, f"{app_id}.touchpoints").with_(
        trigger_durations=f"trial_stalled={LAG_DURATION_S}s", quiet_hours="off"
    )


async def _collect(consumer: AIOKafkaConsumer, lags: list[float], wanted: int) -> None:
    while len(lags) < wanted:
        batch = await consumer.getmany(timeout_ms=50)
        received_ms = time.time() * 1000
        for messages in batch.values():
            for message in messages:
                timer = (orjson.loads(message.value or b"{}").get("cause") or {}).get("timer")
                if timer is not None:
                    due_ms = datetime.fromisoformat(timer["due_at"]).timestamp() * 1000
                    lags.append(max(0.0, received_ms - due_ms) / 1000)


# ---------------------------------------------------------------------- memory


async def write_pending(
    settings: Settings, customers: int, templates: list[CustomerState], tag: str
) -> dict[str, Any]:
    """``customers`` records, each with a pending timer, into the table's changelog."""
    topic = changelog_topic(settings)
    await create_topic(
        settings.kafka_bootstrap, topic, settings.partitions, {"cleanup.policy": "compact"}
    )

    def records() -> Any:
        for n in range(customers):
            customer = f"timer-{tag}-{n}"
            state = replace(templates[n % len(templates)], customer_id=customer)
            yield customer.encode("utf-8"), encode_state(state)

    began = time.monotonic()
    count, size = await produce_fast(settings.kafka_bootstrap, topic, records())
    return {"topic": topic, "records": count, "bytes": size, "write_s": time.monotonic() - began}


def rebuilt_rss(
    setup: EngineSetup, settings: Settings, name: str, timeout: float = 900
) -> dict[str, Any]:
    """Start a worker, wait until its timer index is rebuilt, read its memory, stop it."""
    proc: Proc = engine_proc(setup, settings, name).start()
    try:
        ready_s = proc.wait_ready(timeout=timeout)
        deadline = time.monotonic() + timeout
        found = REBUILT.search(proc.log())
        while found is None or int(found.group(2)) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no timer index rebuilt after {timeout:.0f}s")
            proc.check_alive()
            time.sleep(0.25)
            found = None
            for found in REBUILT.finditer(proc.log()):  # noqa: B007 - the last one counts
                pass
        time.sleep(1.0)
        proc.check_alive()
        rss, peak = proc.rss_bytes(), proc.peak_rss_bytes()
    finally:
        code = proc.stop()
    assert found is not None
    return {
        "ready_s": ready_s,
        "pending_timers": int(found.group(1)),
        "customers": int(found.group(2)),
        "rebuild_s": float(found.group(3)),
        "rebuild_busy_s": float(found.group(4)),
        "rebuild_s_per_100k": float(found.group(5)),
        "rss_bytes": rss,
        "peak_rss_bytes": peak,
        "exit_code": code,
        "log": str(proc.log_path),
    }
