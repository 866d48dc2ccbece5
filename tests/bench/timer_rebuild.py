"""How long rebuilding a partition's timer index from its table takes (not a test).

    python -m tests.bench.timer_rebuild [--customers 100000]

Runs simulated saas journeys through the worker's trigger engine, stores the end
states as the table holds them (``encode_state`` bytes, cloned under new ids up
to ``--customers``), and times ``PartitionTimers.rebuild`` over all of them, as
a worker does for the partitions it is assigned. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from dataclasses import replace
from datetime import UTC, datetime

from engine.clock import WallClock
from engine.ingest import BadInput, decode
from engine.journey import CustomerState
from engine.settings import Settings
from engine.simulate import encode, journeys
from engine.worker.state_store import encode_state
from engine.worker.timers import PartitionTimers
from engine.worker.triggering import trigger_engine


def end_states(customers: int, seed: int, now: datetime) -> list[CustomerState]:
    engine = trigger_engine(Settings())
    rng = random.Random(seed)
    states: dict[str, CustomerState] = {}
    for at, _customer, msg in journeys(customers, seed, now):
        try:
            event = decode(encode(at, msg, rng))
        except BadInput:  # pragma: no cover - the simulator writes valid input
            continue
        state, _ = engine.apply(states.get(event.customer_id), event, now)
        states[event.customer_id] = state
    return list(states.values())


def table(customers: int, templates: list[CustomerState]) -> dict[bytes, bytes]:
    out = {}
    for n in range(customers):
        customer = f"user-{n:08d}"
        state = replace(templates[n % len(templates)], customer_id=customer)
        out[customer.encode()] = encode_state(state)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    templates = end_states(2_000, 7, datetime.now(UTC))
    stored = table(args.customers, templates)
    timers = PartitionTimers(
        trigger_engine(Settings()), args.partitions, WallClock(), event_time=True
    )
    stats = asyncio.run(timers.rebuild(set(range(args.partitions)), stored))
    print(
        json.dumps(
            {
                "customers": stats.customers,
                "pending_timers": stats.pending,
                "rebuild_s": round(stats.seconds, 3),
                "rebuild_s_per_100k": round(stats.seconds_per_100k, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
