"""Reading the customers table's changelog outside a worker: the latest record per key.

Used by ``journey redis rebuild``. The topic is read partition by partition from
its beginning to the end offsets taken when the partition is started; a key lives
in one partition only, so memory holds one partition's latest records at a time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.funnel_source import SourceError, topic_partitions
from engine.settings import Settings


class ChangelogError(RuntimeError):
    """The changelog cannot be read."""


def customers_changelog(settings: Settings) -> str:
    """The changelog topic Faust keeps for the customers table."""
    from engine.worker.app import TABLE_NAME

    return f"{settings.app_id}-{TABLE_NAME}-changelog"


@dataclass
class ReadStats:
    records: int = 0  # changelog records read
    keys: int = 0  # keys with a value at the end (deleted keys left out)


async def latest_records(
    bootstrap: str, topic: str, stats: ReadStats, *, idle_timeout_s: float = 30.0
) -> AsyncIterator[tuple[bytes, bytes]]:
    """(key, value) of every key's newest record, partition after partition."""
    try:
        partitions = await topic_partitions(bootstrap, topic)
    except SourceError as exc:
        raise ChangelogError(str(exc)) from exc
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        await consumer.start()
    except Exception as exc:
        await consumer.stop()
        raise ChangelogError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        for partition in partitions:
            latest = await _read_partition(
                consumer, TopicPartition(topic, partition), stats, idle_timeout_s
            )
            stats.keys += len(latest)
            for key, value in latest.items():
                yield key, value
    finally:
        await consumer.stop()


async def _read_partition(
    consumer: AIOKafkaConsumer, tp: TopicPartition, stats: ReadStats, idle_timeout_s: float
) -> dict[bytes, bytes]:
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    await consumer.seek_to_beginning(tp)
    latest: dict[bytes, bytes] = {}
    last_progress = time.monotonic()
    while await consumer.position(tp) < end:
        batches = await consumer.getmany(tp, timeout_ms=500)
        for record in batches.get(tp, ()):
            if record.offset >= end:
                break
            stats.records += 1
            if record.key is None:
                continue
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record.value
        if batches:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > idle_timeout_s:
            raise ChangelogError(
                f"no records from {tp.topic}[{tp.partition}] for {idle_timeout_s:.0f}s "
                f"before its end offset {end}"
            )
    return latest
