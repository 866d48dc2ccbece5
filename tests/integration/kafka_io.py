"""Small produce/consume helpers for tests against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass(frozen=True)
class Out:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]],
) -> list[tuple[int, int]]:
    """Send records in order and wait for every ack; returns (partition, offset) each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        where = []
        for key, value, headers in records:
            meta = await producer.send_and_wait(topic, value, key=key, headers=headers)
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[Out]], bool],
    timeout: float = 60.0,
    settle: float = 0.0,
    isolation_level: str = "read_uncommitted",
) -> list[Out]:
    """Read the topics from the start until ``done(records)`` or the timeout.

    ``settle`` keeps reading that many seconds more after ``done`` holds, so a test
    can see that nothing unwanted follows.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level=isolation_level,
    )
    await consumer.start()
    out: list[Out] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            for msgs in batch.values():
                out.extend(
                    Out(m.topic, m.partition, m.offset, m.key, m.value, dict(m.headers))
                    for m in msgs
                )
            if settled_at is None and done(out):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle:
                return out
            await asyncio.sleep(0)
        return out
    finally:
        await consumer.stop()
