"""What triggers cost the worker per event (not a test).

    python -m tests.bench.trigger_overhead [--customers 10000] [--rounds 3]

Simulated saas journeys (``tests.bench.preload.encoded``, about ten events per
customer, customers interleaved as on the topic) go through ``Processor.process``
in batches of 1,000, with a dict as the table, twice: with the stage machine
alone, and as the worker runs it, with the trigger engine, the effect router and
the timer index rescheduled for every changed customer after each batch. Prints
CPU microseconds per event (best of ``--rounds``) as one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.clock import ManualClock
from engine.journey import CustomerState
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.effects import EffectRouter
from engine.worker.processor import Processor, Record
from engine.worker.timers import PartitionTimers
from engine.worker.triggering import trigger_engine
from tests.bench.preload import encoded

BATCH = 1_000


def run(records: list[Record], now: datetime, triggers: bool) -> float:
    settings = Settings().with_(touchpoints_topic="in")
    catalog = Catalog(settings)
    engine = trigger_engine(settings)
    metrics = Metrics(CollectorRegistry(), process=False)
    table: dict[bytes, CustomerState] = {}
    timers = PartitionTimers(engine, 1, ManualClock(now), event_time=False)
    timers.assign([0])
    processor = Processor(
        machine=engine if triggers else engine.machine,
        states=table,
        catalog=catalog,
        clock=ManualClock(now),
        metrics=metrics,
        max_message_bytes=settings.max_message_bytes,
        effects=EffectRouter(catalog, metrics) if triggers else None,
    )
    gc.collect()
    began = time.process_time()
    for start in range(0, len(records), BATCH):
        result = processor.process(records[start : start + BATCH])
        for key, (state, _) in result.changed.items():
            table[key] = state
        if triggers:
            timers.schedule_changed(0, result.changed)
    return (time.process_time() - began) / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    records = [
        Record("in", 0, n, key, value, [])
        for n, (key, value) in enumerate(encoded(args.customers, 7, now))
    ]
    machine, engine = [], []
    for _ in range(args.rounds):
        machine.append(run(records, now, triggers=False))
        engine.append(run(records, now, triggers=True))
    print(
        json.dumps(
            {
                "events": len(records),
                "machine_us_per_event": round(min(machine), 2),
                "triggers_us_per_event": round(min(engine), 2),
                "trigger_overhead_us_per_event": round(min(engine) - min(machine), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
