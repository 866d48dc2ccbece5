"""The ``raw`` contender: a plain aiokafka consume, parse, produce-one-in-five loop.

The limit for a Python consumer on this broker: no tables, no framework. At least
once like the others: every ``commit_interval`` it waits for its sends to be
acknowledged, then commits the consumed offsets.

``python -m tests.bench.raw_loop BOOTSTRAP TOPIC GROUP OUT_TOPIC COMMIT_INTERVAL LOOP``
(LOOP: ``uvloop`` or ``asyncio``, the engine's ``JOURNEY_EVENT_LOOP``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def run(bootstrap: str, topic: str, group: str, out: str, commit_interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    await consumer.start()
    print("raw: Ready", flush=True)
    seen = 0
    pending: list[asyncio.Future[Any]] = []
    dirty = False
    last_commit = time.monotonic()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    doc = orjson.loads(message.value or b"{}")
                    seen += 1
                    if seen % 5 == 0:
                        customer = doc.get("userId") or doc.get("anonymousId")
                        value = orjson.dumps({"customer_id": customer, "type": doc.get("type")})
                        pending.append(await producer.send(out, value, key=message.key))
                dirty = True
            now = time.monotonic()
            if dirty and (now - last_commit >= commit_interval or not batch):
                await asyncio.gather(*pending)
                pending.clear()
                await consumer.commit()
                dirty = False
                last_commit = now
    finally:
        await asyncio.gather(*pending)
        await consumer.stop()
        await producer.stop()
        print(f"raw: processed {seen} records", flush=True)


def main(argv: list[str]) -> int:
    bootstrap, topic, group, out, interval, loop = argv
    if loop == "uvloop":
        import uvloop

        uvloop.run(run(bootstrap, topic, group, out, float(interval)))
    else:
        asyncio.run(run(bootstrap, topic, group, out, float(interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
