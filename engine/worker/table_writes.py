"""Writing customers to the table store and its changelog through the sink.

Shared by the input reader and the timers agent: states go to the store under
their partition (RocksDB keeps one database per partition) and their
changelog records to the sink; after a flush, the changelog offsets written are
remembered by the store as Faust does after its own changelog sends, so a RocksDB
restart reads only the changelog after them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Iterable
from typing import Any, cast

from faust.streams import _current_event  # the context behind faust.current_event()
from faust.types import TP
from faust.types.stores import StoreT

from engine.journey import CustomerState
from engine.worker.sink import Sink, Written
from engine.worker.state_store import StateStore


class _PartitionEvent:
    """What Faust's stores read of the current event: its message's partition."""

    __slots__ = ("__weakref__", "message", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.message = self


_EVENTS: dict[int, _PartitionEvent] = {}


def write_states(
    table: Any,
    store: StateStore,
    sink: Sink,
    partition: int,
    states: Iterable[tuple[bytes, CustomerState]],
) -> None:
    """Store each state under ``partition`` and queue its changelog record."""
    changelog = table.changelog_topic.get_topic_name()
    event = _EVENTS.get(partition)
    if event is None:
        event = _EVENTS[partition] = _PartitionEvent(partition)
    # Faust's stores take the partition from the current event (faust.current_event()).
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        for key, state in states:
            sink.add(changelog, key, store.put(key, state), partition=partition)
    finally:
        _current_event.reset(token)


async def flush(table: Any, sink: Sink) -> list[Written]:
    """Send everything queued on ``sink``; the store remembers the changelog offsets."""
    return await (await send(table, sink))


async def send(table: Any, sink: Sink) -> asyncio.Future[list[Written]]:
    """Hand everything queued on ``sink`` to the producer; the future is done once
    it is all acknowledged and the store remembers the changelog offsets."""
    return asyncio.ensure_future(_persisted(table, await sink.send()))


async def _persisted(table: Any, acknowledged: Awaitable[list[Written]]) -> list[Written]:
    changelog = table.changelog_topic.get_topic_name()
    data = cast(StoreT[bytes, bytes], table.data)
    written = await acknowledged
    for batch in written:
        if batch.topic == changelog:
            data.set_persisted_offset(
                TP(batch.topic, batch.partition), batch.base + batch.count - 1
            )
    return written
