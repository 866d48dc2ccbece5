"""Writing customers to the table store and its changelog through the sink.

Shared by the touchpoint agent and the timers agent: states go to the store under
the current event's partition (RocksDB keeps one database per partition) and their
changelog records to the sink; after a flush, the changelog offsets written are
remembered by the store as Faust does after its own changelog sends, so a RocksDB
restart reads only the changelog after them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, cast

from faust.streams import _current_event  # the context behind faust.current_event()
from faust.types import TP, EventT
from faust.types.stores import StoreT

from engine.journey import CustomerState
from engine.worker.sink import Sink, Written
from engine.worker.state_store import StateStore


def write_states(
    table: Any,
    store: StateStore,
    sink: Sink,
    event: EventT[bytes],
    states: Iterable[tuple[bytes, CustomerState]],
) -> None:
    """Store each state under ``event``'s partition and queue its changelog record."""
    changelog = table.changelog_topic.get_topic_name()
    partition = event.message.partition
    token = _current_event.set(weakref.ref(event))
    try:
        for key, state in states:
            sink.add(changelog, key, store.put(key, state), partition=partition)
    finally:
        _current_event.reset(token)


async def flush(table: Any, sink: Sink) -> list[Written]:
    """Send everything queued on ``sink``; the store remembers the changelog offsets."""
    changelog = table.changelog_topic.get_topic_name()
    data = cast(StoreT[bytes, bytes], table.data)
    written = await sink.flush()
    for batch in written:
        if batch.topic == changelog:
            data.set_persisted_offset(
                TP(batch.topic, batch.partition), batch.base + batch.count - 1
            )
    return written
