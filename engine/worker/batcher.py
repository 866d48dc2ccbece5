"""The batcher: touchpoints in, touchpoint batches out, partition for partition.

A plain Kafka consumer (its own group, ``<app id>-batcher``) fetches the
touchpoints and the re-keyed touchpoints; everything fetched from partition ``p``
goes, as one or a few batch messages (:mod:`engine.envelope`), to partition ``p``
of the batch topic, where the journey agent owning ``p`` reads it. Input offsets
are committed only after the batches holding those records are acknowledged, so a
crash replays records (the messageId dedupe drops them) and never loses one.

Runs inside each worker process; its partitions need not be the ones the agent
of that process owns. A failure stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from engine import envelope
from engine.catalog import Catalog
from engine.settings import Settings

log = logging.getLogger(__name__)

#: How long an idle fetch waits before the loop looks at commits and stopping again.
_IDLE_POLL_MS = 200


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Every fetched record is acknowledged before the next fetch (where a
        # rebalance runs), so all acknowledged offsets can be committed here.
        await self.batcher.commit()
        self.batcher.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("batcher partitions: %s", sorted((tp.topic, tp.partition) for tp in assigned))


class Batcher(Service):
    """Moves input records into the batch topic."""

    def __init__(self, settings: Settings, catalog: Catalog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.sources = [catalog.name(Catalog.TOUCHPOINTS), catalog.name(Catalog.REKEYED)]
        self.target = catalog.name(Catalog.BATCHES)
        self.group_id = f"{settings.app_id}-batcher"
        self._acked: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        s = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=f"{s.app_id}-batcher",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_request_size=s.batch_max_bytes + 64 * 1024 + s.max_message_bytes,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=f"{s.app_id}-batcher",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max,
            isolation_level="read_committed",
        )
        await self._producer.start()
        try:
            self._consumer.subscribe(self.sources, listener=_CommitOnRevoke(self))
            await self._consumer.start()
        except BaseException:
            await self._producer.stop()
            raise

    async def on_stop(self) -> None:
        consumer, producer = self._consumer, self._producer
        try:
            if consumer is not None:
                try:
                    await self.commit()
                finally:
                    await consumer.stop()
        finally:
            if producer is not None:
                await producer.stop()

    @Service.task
    async def _run(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None
        assert producer is not None
        s = self.settings
        target = self.target
        interval = s.batcher_commit_interval_s
        last_send = 0.0
        while not self.should_stop:
            fetched = await consumer.getmany(timeout_ms=_IDLE_POLL_MS, max_records=s.batch_max)
            count = sum(len(m) for m in fetched.values())
            wait = last_send + s.batch_interval_s - time.monotonic()
            if 0 < count < s.batch_max and wait > 0:
                # Under steady traffic, at most one batch message per partition per
                # interval: each costs the agent the same Faust overhead whatever its
                # size. A record after a quiet spell goes at once.
                await asyncio.sleep(wait)
                more = await consumer.getmany(timeout_ms=0, max_records=s.batch_max - count)
                for tp, messages in more.items():
                    fetched[tp] = [*fetched.get(tp, ()), *messages]
            last_send = time.monotonic()
            sends = []
            fetched_to: dict[TopicPartition, int] = {}
            for tp, messages in fetched.items():
                if not messages:
                    continue
                records = [
                    envelope.SourceRecord(
                        m.offset, m.timestamp, m.key, m.value, list(m.headers or ())
                    )
                    for m in messages
                ]
                for chunk in envelope.chunks(
                    records, max_records=s.batch_max, max_bytes=s.batch_max_bytes
                ):
                    data = envelope.encode(tp.topic, tp.partition, chunk)
                    sends.append(await producer.send(target, data, partition=tp.partition))
                fetched_to[tp] = messages[-1].offset + 1
            if sends:
                await asyncio.gather(*sends)
                self._acked.update(fetched_to)
            if time.monotonic() - self._last_commit >= interval:
                await self.commit()

    def forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._acked.pop(tp, None)
            self._committed.pop(tp, None)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records between the committed offset and the end of each assigned input
        partition: ``{(topic, partition): records}``."""
        consumer = self._consumer
        if consumer is None:
            return {}
        tps = list(consumer.assignment())
        if not tps:
            return {}
        ends = await consumer.end_offsets(tps)
        lags: dict[tuple[str, int], int] = {}
        for tp in tps:
            done = self._committed.get(tp)
            if done is None:
                done = await consumer.committed(tp)  # committed before this process
            if done is None:
                done = (await consumer.beginning_offsets([tp]))[tp]
            lags[tp.topic, tp.partition] = max(0, ends[tp] - done)
        return lags

    async def commit(self) -> None:
        """Commit the input offsets whose records are in acknowledged batches."""
        consumer = self._consumer
        self._last_commit = time.monotonic()
        if consumer is None:
            return
        todo = {
            tp: offset
            for tp, offset in self._acked.items()
            if self._committed.get(tp) != offset and tp in consumer.assignment()
        }
        if todo:
            await consumer.commit(todo)
            self._committed.update(todo)
