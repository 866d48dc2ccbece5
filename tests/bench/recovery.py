"""Table recovery time and resident memory per customer, memory store and RocksDB.

The customers are written straight into the table's changelog topic
(``<app_id>-customers-changelog``): one compact record per customer, the bytes the
engine's own :func:`~engine.worker.state_store.encode_state` writes, cloned from the
end states of simulated journeys run through the real stage machine.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.ingest import BadInput, decode
from engine.journey import CustomerState, TriggerEngine
from engine.journey.state import to_ms
from engine.settings import Settings
from engine.simulate import encode, journeys
from engine.worker.app import TABLE_NAME
from engine.worker.state_store import encode_state
from engine.worker.triggering import trigger_engine
from tests.bench.engine_runs import EngineSetup, engine_proc
from tests.bench.kafka_util import create_topic, produce_fast

#: Settle time after the ready line before resident memory is read.
SETTLE_S = 1.0


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def template_states(customers: int, seed: int) -> list[CustomerState]:
    """End states of simulated customers after their whole journey, run through the
    worker's trigger engine (the processing clock is the event time) with the timers
    due by now fired, as a running worker leaves them: no timer is overdue."""
    engine = trigger_engine(Settings())
    now = datetime.now(UTC)
    rng = random.Random(seed)
    states: dict[str, CustomerState] = {}
    for at, _customer, msg in journeys(customers, seed, now):
        try:
            event = decode(encode(at, msg, rng))
        except BadInput:  # pragma: no cover - the simulator writes valid input
            continue
        state, _ = engine.apply(states.get(event.customer_id), event, at)
        states[event.customer_id] = state
    return [caught_up(engine, state, now) for state in states.values()]


def caught_up(engine: TriggerEngine, state: CustomerState, now: datetime) -> CustomerState:
    """The state after its timers due by ``now`` fired."""
    now_ms = to_ms(now)
    for _ in range(32):
        timer = engine.next_timer(state)
        if timer is None or timer.due_ms > now_ms:
            break
        applied, _ = engine.apply_timer(state, timer, now)
        assert applied is not None
        state = applied
    return state


def changelog_records(
    count: int, templates: list[CustomerState], tag: str
) -> Iterator[tuple[bytes, bytes]]:
    for n in range(count):
        customer = f"user-{tag}-{n}"
        state = dataclasses.replace(templates[n % len(templates)], customer_id=customer)
        yield customer.encode("utf-8"), encode_state(state)


async def write_changelog(
    settings: Settings, customers: int, templates: list[CustomerState], tag: str
) -> dict[str, Any]:
    topic = changelog_topic(settings)
    await create_topic(
        settings.kafka_bootstrap, topic, settings.partitions, {"cleanup.policy": "compact"}
    )
    began = time.monotonic()
    count, size = await produce_fast(
        settings.kafka_bootstrap, topic, changelog_records(customers, templates, tag)
    )
    return {
        "topic": topic,
        "records": count,
        "bytes": size,
        "avg_record_bytes": size / max(count, 1),
        "write_s": time.monotonic() - began,
    }


def start_to_ready(setup: EngineSetup, settings: Settings, name: str) -> dict[str, Any]:
    """Start a worker, time it to its ready line, read its memory, stop it."""
    proc = engine_proc(setup, settings, name).start()
    try:
        ready_s = proc.wait_ready(timeout=600)
        time.sleep(SETTLE_S)
        proc.check_alive()
        rss, peak = proc.rss_bytes(), proc.peak_rss_bytes()
    finally:
        code = proc.stop()
    return {
        "ready_s": ready_s,
        "rss_bytes": rss,
        "peak_rss_bytes": peak,
        "exit_code": code,
        "log": str(proc.log_path),
    }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def per_customer(
    baseline: dict[str, Any], recovered: dict[str, Any], customers: int, target: int
) -> dict[str, Any]:
    """RSS per customer and the recovery time scaled linearly to ``target`` customers.

    Only the part of the start-up that the table adds (recovered minus empty) is
    scaled; the fixed start-up of an empty worker is added back once.
    """
    extra_s = max(recovered["ready_s"] - baseline["ready_s"], 0.0)
    return {
        "customers": customers,
        "ready_empty_s": baseline["ready_s"],
        "ready_s": recovered["ready_s"],
        "recovery_extra_s": extra_s,
        "recovery_target_s": baseline["ready_s"] + extra_s * target / customers,
        "extrapolated": customers != target,
        "rss_empty_bytes": baseline["rss_bytes"],
        "rss_bytes": recovered["rss_bytes"],
        "peak_rss_bytes": recovered["peak_rss_bytes"],
        "rss_per_customer_bytes": (recovered["rss_bytes"] - baseline["rss_bytes"]) / customers,
    }
