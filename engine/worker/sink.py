"""Everything a worker writes to Kafka, as whole record batches.

A batch of touchpoints yields changelog records (one per changed customer), stage
changes, dead letters and re-keyed touchpoints. Sending each as its own message
costs tens of microseconds in the client; here they are grouped by topic and
partition into record batches (``AIOKafkaProducer.create_batch``/``send_batch``),
and the caller awaits the whole set before the input is acknowledged.

Keyed records go to the partition Kafka's default partitioner picks (murmur2 of
the key, as the Java client), so the same customer always lands on the same
partition; records without a key go to partition 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from mode import Service

from engine.settings import Settings

Headers = Sequence[tuple[str, bytes]]

#: Largest record batch the sink builds (the broker's default limit is 1 MiB).
BATCH_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Written:
    """Where one record batch landed: offsets ``base`` .. ``base + count - 1``."""

    topic: str
    partition: int
    base: int
    count: int


#: Keys whose partitioning hash the sink keeps.
_HASHES_KEPT = 100_000


class Sink(Service):
    """Groups records by topic and partition and sends them as record batches."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._partitions: dict[str, int] = {}
        self._groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers]]] = {}
        self._producer: Any = None
        self._hashes: dict[bytes, int] = {}

    async def on_start(self) -> None:
        settings = self.settings
        # Made here: the client binds to the running event loop.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-sink",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=BATCH_BYTES,
            # A dead letter is the original record, up to the input topic's limit.
            max_request_size=16 * 1024 * 1024,
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def prepare(self, topics: Iterable[str]) -> None:
        """Learn the partition count of each topic the worker writes by key."""
        for topic in topics:
            await self._partition_count(topic)

    def partitions(self, topic: str) -> int:
        """The partition count of a prepared topic."""
        return self._partitions[topic]

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; ``partition`` None: by key (the topic must be prepared)."""
        if partition is None:
            count = self._partitions[topic]
            if key is None:
                partition = 0
            else:
                hashed = self._hashes.get(key)
                if hashed is None:
                    # murmur2 is pure Python: once per key (a customer's records
                    # go to several topics), the cache bounded.
                    if len(self._hashes) >= _HASHES_KEPT:
                        self._hashes.clear()
                    hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
                partition = hashed % count
        group = self._groups.get((topic, partition))
        if group is None:
            group = self._groups[topic, partition] = []
        group.append((key, value, headers or []))

    async def flush(self) -> list[Written]:
        """Send everything queued; returns once every batch is acknowledged."""
        return await (await self.send())

    async def send(self) -> asyncio.Future[list[Written]]:
        """Hand everything queued to the producer (waiting only while its buffer
        is full); the future is done once all of it is acknowledged. Sends are
        acknowledged in the order they were handed over, partition by partition."""
        groups, self._groups = self._groups, {}
        sent: list[tuple[str, int, int, Any]] = []
        for (topic, partition), records in groups.items():
            await self._send_group(topic, partition, records, sent)
        return asyncio.ensure_future(_acknowledged(sent))

    async def _send_group(
        self,
        topic: str,
        partition: int,
        records: list[tuple[bytes | None, bytes | None, Headers]],
        sent: list[tuple[str, int, int, Any]],
    ) -> None:
        producer = self._producer
        batch, count = producer.create_batch(), 0
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Full: send it and start the next one with this record (the first
                # record of a batch is always taken, however large).
                sent.append((topic, partition, count, await self._send(batch, topic, partition)))
                batch, count = producer.create_batch(), 0
                batch.append(key=key, value=value, timestamp=None, headers=headers)
            count += 1
        if count:
            sent.append((topic, partition, count, await self._send(batch, topic, partition)))

    async def _send(self, batch: Any, topic: str, partition: int) -> Any:
        batch.close()
        return await self._producer.send_batch(batch, topic, partition=partition)

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            found = await self._producer.partitions_for(topic)
            if not found:
                raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
            count = self._partitions[topic] = len(found)
        return count


async def _acknowledged(sent: list[tuple[str, int, int, Any]]) -> list[Written]:
    if not sent:
        return []
    results = await asyncio.gather(*(future for *_, future in sent))
    return [
        Written(topic, partition, meta.offset, count)
        for (topic, partition, count, _), meta in zip(sent, results, strict=True)
    ]
