"""The input reader's bookkeeping without a broker: what it applies, and which
offsets count as done while sends are in flight (the worker tests run it for real)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition

from engine.catalog import Catalog
from engine.settings import Settings
from engine.worker.input_reader import MAX_IN_FLIGHT, InputReader


@dataclass
class _Rec:
    topic: str
    partition: int
    offset: int


class _Harness:
    def __init__(self) -> None:
        settings = Settings().with_(app_id="reader-test")
        self.catalog = Catalog(settings)
        self.applied: list[tuple[int, list[int]]] = []
        self.sends: list[asyncio.Future[Any]] = []
        self.steps: list[str] = []
        self.reader = InputReader(settings, self.catalog, self.apply, self.send)
        self.topic = self.catalog.name(Catalog.TOUCHPOINTS)
        self.rekeyed = self.catalog.name(Catalog.REKEYED)

    def apply(self, partition: int, records: list[Any]) -> None:
        self.applied.append((partition, [r.offset for r in records]))
        self.steps.append(f"apply {partition}")

    async def send(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sends.append(future)
        self.steps.append("send")
        return future

    def fetch(self, *runs: tuple[str, int, range]) -> dict[TopicPartition, list[Any]]:
        return {
            TopicPartition(topic, p): [_Rec(topic, p, o) for o in offsets]
            for topic, p, offsets in runs
        }


async def test_records_of_unowned_partitions_are_not_applied() -> None:
    h = _Harness()
    h.reader.owned = frozenset({1, 3})
    await h.reader._handle(
        h.fetch((h.topic, 0, range(5, 7)), (h.topic, 1, range(0, 2)), (h.rekeyed, 1, range(9, 10)))
    )
    # Touchpoints and re-keyed touchpoints of partition 1 together, each in its
    # order; partition 0 left alone.
    [(partition, offsets)] = h.applied
    assert partition == 1
    assert sorted(offsets) == [0, 1, 9]
    assert [o for o in offsets if o < 9] == [0, 1]


async def test_offsets_are_done_only_once_acknowledged_and_in_fetch_order() -> None:
    h = _Harness()
    reader = h.reader
    reader.owned = frozenset({0})
    tp = TopicPartition(h.topic, 0)
    await reader._handle(h.fetch((h.topic, 0, range(0, 10))))
    await reader._handle(h.fetch((h.topic, 0, range(10, 20))))
    assert reader._done == {}  # nothing acknowledged yet

    h.sends[1].set_result(None)  # the second acknowledged first
    await reader._settle(MAX_IN_FLIGHT)
    assert reader._done == {}  # the first is still in flight: nothing is done

    h.sends[0].set_result(None)
    await reader._settle(MAX_IN_FLIGHT)
    assert reader._done == {tp: 20}
    assert not reader._in_flight


async def test_at_most_max_in_flight_sends_wait() -> None:
    h = _Harness()
    reader = h.reader
    reader.owned = frozenset({0})
    for n in range(MAX_IN_FLIGHT + 1):
        await reader._handle(h.fetch((h.topic, 0, range(n * 10, n * 10 + 10))))
    settling = asyncio.ensure_future(reader._settle(MAX_IN_FLIGHT))
    await asyncio.sleep(0.01)
    assert not settling.done()  # one too many in flight: waits for the oldest
    h.sends[0].set_result(None)
    await asyncio.wait_for(settling, 1)
    assert reader._done == {TopicPartition(h.topic, 0): 10}
    assert len(reader._in_flight) == MAX_IN_FLIGHT


async def test_a_failed_send_is_raised_and_nothing_after_it_is_done() -> None:
    h = _Harness()
    reader = h.reader
    reader.owned = frozenset({0})
    await reader._handle(h.fetch((h.topic, 0, range(0, 5))))
    await reader._handle(h.fetch((h.topic, 0, range(5, 9))))
    h.sends[0].set_exception(RuntimeError("broker said no"))
    h.sends[1].set_result(None)
    with pytest.raises(RuntimeError, match="broker said no"):
        await reader._settle(0)
    assert reader._done == {}


def test_a_full_fetch_says_the_input_is_behind() -> None:
    h = _Harness()
    most = h.reader.settings.batch_max
    assert h.reader.full(h.fetch((h.topic, 0, range(most - 1)), (h.rekeyed, 0, range(1))))
    assert not h.reader.full(h.fetch((h.topic, 0, range(most - 1))))
    assert not h.reader.full({})


async def test_each_partition_is_sent_once_applied_and_the_fetch_done_once_all_are() -> None:
    h = _Harness()
    reader = h.reader
    reader.owned = frozenset({0, 2})
    await reader._handle(h.fetch((h.topic, 2, range(0, 3)), (h.topic, 0, range(7, 9))))
    # The first partition's output goes to the producer before the next is applied.
    assert h.steps == ["apply 0", "send", "apply 2", "send"]
    h.sends[0].set_result(None)
    await reader._settle(MAX_IN_FLIGHT)
    assert reader._done == {}  # partition 2 of the same fetch is still in flight
    h.sends[1].set_result(None)
    await asyncio.sleep(0)  # the fetch's gathered acknowledgement completes
    await reader._settle(MAX_IN_FLIGHT)
    assert reader._done == {TopicPartition(h.topic, 0): 9, TopicPartition(h.topic, 2): 3}
    assert not reader._in_flight
