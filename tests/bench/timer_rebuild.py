"""How long rebuilding a partition's timer index from its table takes (not a test).

    python -m tests.bench.timer_rebuild [--customers 100000]

Stores the end states of simulated saas journeys (``recovery.template_states``)
as the table holds them (``encode_state`` bytes, cloned under new ids up to
``--customers``), and times ``PartitionTimers.rebuild`` over all of them, as
a worker does for the partitions it is assigned. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import replace

from engine.clock import WallClock
from engine.journey import CustomerState
from engine.settings import Settings
from engine.worker.state_store import encode_state
from engine.worker.timers import PartitionTimers
from engine.worker.triggering import trigger_engine
from tests.bench.recovery import template_states


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
    templates = template_states(2_000, 7)
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
                "rebuild_busy_s": round(stats.busy_seconds, 3),
                "rebuild_s_per_100k": round(stats.seconds_per_100k, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
