"""The latency run's reader of stage changes, in a process of its own.

``python -m tests.bench.stage_reader BOOTSTRAP TOPIC PARTITIONS OUT`` reads every
partition of the stage-change topic from the start, notes when each record was
received (``time.monotonic()``, the same clock in every process of the machine)
and, once stopped (SIGTERM or SIGINT), writes to ``OUT`` one row per record:
``[message_id, received, processed_at, record_timestamp_ms]`` (``message_id``
from the change's ``cause``, None when it has none).

In the benchmark's own process a receipt could wait behind the sender's work, and
the wait counted as the engine's. Here it only receives; the records are parsed
after it is stopped, so parsing takes no CPU from the run it measures.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

#: What the reader prints once it holds a position in every partition.
READY = "stage_reader: Ready"

Row = tuple[str | None, float, str | None, int]


def rows(received: Sequence[tuple[float, int, bytes | None]]) -> list[Row]:
    """One row per received record; see the module documentation."""
    out: list[Row] = []
    for at, timestamp, value in received:
        change = orjson.loads(value or b"{}")
        cause = change.get("cause") or {}
        out.append((cause.get("message_id"), at, change.get("processed_at"), timestamp))
    return out


async def read(bootstrap: str, topic: str, partitions: int, stop: asyncio.Event) -> list[Row]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    received: list[tuple[float, int, bytes | None]] = []
    await consumer.start()
    try:
        await _positioned(consumer, partitions)
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            at = time.monotonic()
            for messages in batch.values():
                received.extend((at, m.timestamp, m.value) for m in messages)
    finally:
        await consumer.stop()
    return rows(received)


async def _positioned(consumer: AIOKafkaConsumer, partitions: int, timeout: float = 30.0) -> None:
    """Wait until the consumer has every partition and a position in each: the
    first changes must not wait for the reader's own start."""
    deadline = time.monotonic() + timeout
    while len(consumer.assignment()) < partitions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stage-change reader got no assignment in {timeout}s")
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)


def load(path: Path) -> list[Row]:
    """The rows a stopped reader wrote."""
    data: list[Any] = orjson.loads(path.read_bytes())
    return [(mid, float(at), processed, int(ts)) for mid, at, processed, ts in data]


async def run(bootstrap: str, topic: str, partitions: int) -> list[Row]:
    """Read until SIGTERM or SIGINT; the rows of everything received."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await read(bootstrap, topic, partitions, stop)


def main(argv: Sequence[str]) -> int:
    bootstrap, topic, partitions, out = argv
    # Nothing it allocates while reading is garbage before it exits.
    gc.disable()
    found = asyncio.run(run(bootstrap, topic, int(partitions)))
    Path(out).write_bytes(orjson.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
