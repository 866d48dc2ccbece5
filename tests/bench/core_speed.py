"""Per-event speed of the worker's pure path, without Kafka or Faust.

``python -m tests.bench.core_speed [--events N] [--customers C] [--batch B] [--repeat R]``

Builds N simulated Segment records (:func:`tests.bench.preload.encoded`, keyed by
customer) and times, each R times, with the CPU time of this process (so that
other work on a shared machine counts less; the fastest run is reported):

* ``decode``: :func:`engine.ingest.decode` of every record value;
* ``apply``: :meth:`StageMachine.apply` of every decoded event, in input order;
* ``encode``: :func:`encode_state` of each customer's state once per batch of B
  records it changed, as the agent writes the table;
* ``processor``: :meth:`Processor.process` in batches of B records, each changed
  customer then stored with :meth:`StateStore.put` (which encodes it), the work the
  agent does per batch apart from Kafka and Faust.

The prepared records and events are moved out of the garbage collector's sight
(``gc.freeze``) while timing: a worker does not hold a hundred thousand records at
once, and full collections over them would be counted against the engine.

Prints one JSON object: events per CPU second and µs per event of the processor
path, the same path's events per wall-clock second, and µs per event (decode,
apply) or per stored state (encode) of each stage.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.clock import ManualClock
from engine.ingest import decode
from engine.journey import CustomerState, Event, StageMachine, resolve_model
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.processor import Processor, Record
from engine.worker.state_store import StateStore, encode_state
from tests.bench.preload import encoded


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.core_speed", description=__doc__)
    p.add_argument("--events", type=int, default=100_000, help="records to process")
    p.add_argument("--customers", type=int, default=20_000, help="simulated customers")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--batch", type=int, default=1000, help="records per processor batch")
    p.add_argument("--repeat", type=int, default=3, help="runs per stage; the fastest counts")
    p.add_argument("--model", default="saas")
    args = p.parse_args(argv)
    for name in ("events", "customers", "batch", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def _best(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """The shortest CPU time and the shortest wall time of ``repeat`` runs (s)."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return cpu, wall


def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    now = datetime.now(UTC)
    records = [
        Record("touchpoints", 0, offset, key, value, [])
        for offset, (key, value) in enumerate(
            itertools.islice(encoded(args.customers, args.seed, now), args.events)
        )
    ]
    n = len(records)
    batches = [records[i : i + args.batch] for i in range(0, n, args.batch)]
    machine = StageMachine(
        resolve_model(args.model),
        dedupe_window=timedelta(seconds=settings.dedupe_window_s),
        dedupe_max_ids=settings.dedupe_max_ids,
        history_limit=settings.history_limit,
    )
    limit = settings.max_message_bytes

    events: list[Event] = [decode(r.value, r.headers, max_bytes=limit) for r in records]

    def run_decode() -> None:
        for r in records:
            decode(r.value, r.headers, max_bytes=limit)

    # Per batch, the last state of every customer the batch changed: what is encoded.
    to_store: list[CustomerState] = []

    def run_apply() -> None:
        states: dict[str, CustomerState] = {}
        apply = machine.apply
        to_store.clear()
        for start in range(0, n, args.batch):
            changed: dict[str, CustomerState] = {}
            for event in events[start : start + args.batch]:
                new, _ = apply(states.get(event.customer_id), event, now)
                states[event.customer_id] = changed[event.customer_id] = new
            to_store.extend(changed.values())

    def run_encode() -> None:
        for state in to_store:
            encode_state(state)

    def run_processor() -> None:
        store = StateStore({}, settings.state_cache_size)
        processor = Processor(
            machine=machine,
            states=store,
            catalog=Catalog(settings),
            clock=ManualClock(now),
            metrics=Metrics(CollectorRegistry()),
            max_message_bytes=limit,
        )
        for batch in batches:
            result = processor.process(batch)
            for key, (state, _index) in result.changed.items():
                store.put(key, state)

    gc.collect()
    gc.freeze()
    try:
        decode_s, _ = _best(run_decode, args.repeat)
        apply_s, _ = _best(run_apply, args.repeat)
        encode_s, _ = _best(run_encode, args.repeat)
        processor_s, processor_wall_s = _best(run_processor, args.repeat)
    finally:
        gc.unfreeze()
    return {
        "events": n,
        "customers": args.customers,
        "batch": args.batch,
        "repeat": args.repeat,
        "stored_states": len(to_store),
        "processor_events_per_s": round(n / processor_s),
        "processor_us_per_event": round(processor_s / n * 1e6, 2),
        "processor_events_per_wall_s": round(n / processor_wall_s),
        "decode_us_per_event": round(decode_s / n * 1e6, 2),
        "apply_us_per_event": round(apply_s / n * 1e6, 2),
        "encode_us_per_state": round(encode_s / max(1, len(to_store)) * 1e6, 2),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    report = measure(parse_args(argv))
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
