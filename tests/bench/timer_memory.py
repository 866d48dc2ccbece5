"""Memory and speed of the timer index with many pending timers (not a test).

    python -m tests.bench.timer_memory [--timers 1000000]

Schedules one timer per customer (keys like ``user-00000042``, due times spread
over 30 days), measures the index with tracemalloc, reschedules a tenth of them
(half later, half earlier) and pops the due ones in one-second ticks over an hour.
Then measures the customer record: a typical saas customer (sign-up, purchase,
three days of use, an NPS score that sent a trigger), decoded 10,000 times as the
worker's record cache would hold it, with and without its trigger memory.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson

from engine.journey import (
    CustomerState,
    DeliveryPolicy,
    Event,
    EventType,
    StageMachine,
    Timer,
    TimerIndex,
    TriggerEngine,
    load_preset,
)

START = 1_780_000_000_000
DAY = 86_400_000


def typical_customer() -> CustomerState:
    engine = TriggerEngine(StageMachine(load_preset("saas")), DeliveryPolicy(quiet=None))
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    steps = [
        (EventType.PAGE, None, 0, {}),
        (EventType.TRACK, "Signed Up", 1, {}),
        (EventType.TRACK, "Order Completed", 3, {}),
        (EventType.TRACK, "Signed In", 4, {}),
        (EventType.TRACK, "Feature Used", 5, {}),
        (EventType.TRACK, "Signed In", 6, {}),
        (EventType.TRACK, "NPS Submitted", 7, {"score": 9}),
    ]
    state: CustomerState | None = None
    for i, (kind, name, day, props) in enumerate(steps):
        at = t0 + timedelta(days=day)
        event = Event(
            f"msg-{i:04d}-0a1b2c3d4e5f", "user-00000042", kind, at, name, properties=props
        )
        state, _ = engine.apply(state, event, at)
    assert state is not None
    assert state.triggers is not None
    return state


def record_bytes(state: CustomerState, copies: int = 10_000) -> int:
    raw = orjson.dumps(state.to_dict())
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    held = [CustomerState.from_dict(orjson.loads(raw)) for _ in range(copies)]
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert held[0] == state
    return (current - base) // copies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timers", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.timers
    rng = random.Random(1)
    keys = [f"user-{i:08d}".encode() for i in range(n)]
    dues = [START + rng.randrange(30 * DAY) for _ in range(n)]
    rules = ("inactive", "trial_stalled", "onboarding_stalled", "churned_30d")
    timers = [
        Timer(k.decode(), rules[i % 4], d, d - 14 * DAY)
        for i, (k, d) in enumerate(zip(keys, dues, strict=True))
    ]
    gc.collect()

    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    index = TimerIndex()
    t0 = time.perf_counter()
    for k, timer in zip(keys, timers, strict=True):
        index.schedule(k, timer)
    schedule_s = time.perf_counter() - t0
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    index_bytes = current - base
    # The keys were made before tracing (this script holds them too); in a worker
    # the index holds them alone, so they count on top.
    keys_bytes = sum(k.__sizeof__() for k in keys)
    tracemalloc.stop()
    del timers
    gc.freeze()  # what is built stays; full collections would walk it on every pass

    t0 = time.perf_counter()
    moved = 0
    for i in range(0, n, 10):
        # Half later (newer activity), half earlier (but not before the start).
        due = dues[i] + DAY if i % 20 else max(START, dues[i] - DAY // 2)
        index.schedule(keys[i], Timer(keys[i].decode(), "inactive", due, dues[i]))
        moved += 1
    reschedule_s = time.perf_counter() - t0

    now = START
    fired = 0
    ticks: list[float] = []
    lags: list[int] = []
    for _ in range(3600):
        now += 1000
        tick0 = time.perf_counter()
        popped = index.pop_due(now)
        ticks.append(time.perf_counter() - tick0)
        fired += len(popped)
        lags.extend(now - timer.due_ms for _, timer in popped)
    ticks.sort()
    lags.sort()

    typical = typical_customer()
    with_triggers = record_bytes(typical)
    without = record_bytes(replace(typical, triggers=None))
    print(
        json.dumps(
            {
                "pending_timers": n,
                "index_bytes_tracemalloc": index_bytes,
                "index_mib": round(index_bytes / 2**20, 1),
                "bytes_per_timer": round(index_bytes / n, 1),
                "key_objects_bytes": keys_bytes,
                "total_with_keys_mib": round((index_bytes + keys_bytes) / 2**20, 1),
                "total_bytes_per_timer": round((index_bytes + keys_bytes) / n, 1),
                "schedule_us_per_timer": round(schedule_s / n * 1e6, 2),
                "reschedule_us_per_timer": round(reschedule_s / moved * 1e6, 2),
                "fired_in_one_hour_of_1s_ticks": fired,
                "tick_ms_p50": round(ticks[len(ticks) // 2] * 1000, 3),
                "tick_ms_p99": round(ticks[int(len(ticks) * 0.99)] * 1000, 3),
                "tick_ms_max": round(ticks[-1] * 1000, 3),
                "lag_ms_p50": lags[len(lags) // 2],
                "lag_ms_p99": lags[int(len(lags) * 0.99)],
                "examined_entries": index.examined,
                "typical_record_bytes_in_memory": with_triggers,
                "of_which_trigger_memory_bytes": with_triggers - without,
                "typical_record_json_bytes": len(orjson.dumps(typical.to_dict())),
                "trigger_memory_json": typical.triggers.to_dict() if typical.triggers else None,
            }
        )
    )


if __name__ == "__main__":
    main()
