"""The input reader: the touchpoints of the partitions this worker owns, read on the event loop.

Faust assigns the partitions: the customers table and the timers topic, which are
co-partitioned with the touchpoints. Once the table of an assignment is recovered,
the reader reads partition ``p`` of the touchpoints and of the re-keyed touchpoints
for every owned ``p`` with a plain Kafka consumer (manual assignment; offsets
committed in the group ``<app id>-input``). What one fetch returns goes to the app
a partition at a time (``apply``), each partition's output handed to the producer
(``send``) as soon as it is applied; the next fetch is applied while those sends
are in flight (at most ``MAX_IN_FLIGHT`` fetches; while any is, a fetch waits at
most ``_IN_FLIGHT_POLL_MS`` for input), and the records count as done only once
everything they wrote and produced is acknowledged, in fetch order. Done offsets are committed every
``input_commit_interval_s``, before every change of assignment and on stop: after a
crash the records since the last commit are read again, and the messageId dedupe in
each customer's record drops them.

Faust's own consumer does not read the touchpoints: its per-message path (a hop to
the consumer thread and back, a stream buffer, an acknowledgement per message)
delayed each message by tens of milliseconds to seconds and cost more CPU than the
journey logic itself. One task owns the consumer: assignment changes are requests
that the task applies between two fetches, so no fetch ever straddles one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from mode import Service

from engine.catalog import Catalog
from engine.settings import Settings

log = logging.getLogger(__name__)

#: How long an idle fetch waits before the loop looks at requests and stopping again.
_IDLE_POLL_MS = 100

#: How long a fetch waits while sends are in flight, before the loop marks what
#: they acknowledged: new input is applied as soon as it arrives, not after an ack.
_IN_FLIGHT_POLL_MS = 5

#: Fetches applied whose outputs are not acknowledged yet: the next fetch is
#: applied while the broker acknowledges the previous ones.
MAX_IN_FLIGHT = 3

Apply = Callable[[int, list[ConsumerRecord[bytes, bytes]]], object]
Send = Callable[[], Awaitable["asyncio.Future[Any]"]]


class InputReader(Service):
    """Reads the owned touchpoint partitions; see the module documentation."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        apply: Apply,
        send: Send,
        before_start: Callable[[], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.sources = [catalog.name(Catalog.TOUCHPOINTS), catalog.name(Catalog.REKEYED)]
        self.group_id = f"{settings.app_id}-input"
        self._apply = apply
        self._send = send
        self._in_flight: deque[tuple[dict[TopicPartition, int], asyncio.Future[Any]]] = deque()
        self._before_start = before_start
        self._consumer: AIOKafkaConsumer | None = None
        self.owned: frozenset[int] = frozenset()
        self._wanted: frozenset[int] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._done: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._commit_lock = asyncio.Lock()
        self._committing: asyncio.Future[None] | None = None
        self._running = False
        self._stopped_reading = asyncio.Event()
        #: The last fetch was full: more is waiting (the timer service then holds back).
        self.behind = False

    async def on_start(self) -> None:
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=f"{s.app_id}-input",
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max,
            isolation_level="read_committed",
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        # The read in flight finishes (its outputs acknowledged) before the commit.
        self._wake.set()
        if self._running:
            await self._stopped_reading.wait()
        consumer = self._consumer
        if consumer is not None:
            try:
                await self._settle(0)
                await self.commit()
            finally:
                await consumer.stop()
        self._release_waiters()

    # ------------------------------------------------------------ assignment

    async def own(self, partitions: Collection[int]) -> None:
        """Read exactly ``partitions`` from now on; returns once the reader has
        stopped reading every other partition (at once when it is not running)."""
        self._wanted = frozenset(partitions)
        if not self._running:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _apply_wanted(self, consumer: AIOKafkaConsumer) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != self.owned:
            await self._settle(0)
            await self.commit()
            tps = [TopicPartition(t, p) for t in self.sources for p in sorted(wanted)]
            # Positions restart from the committed offsets, which are the done ones.
            consumer.assign(tps)
            self._done = {tp: o for tp, o in self._done.items() if tp.partition in wanted}
            self._committed = {}
            self.owned = wanted
            log.info("reading touchpoint partitions %s", sorted(wanted))
        self._release_waiters()

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ reading

    @Service.task
    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        if self._before_start is not None:
            await self._before_start()
        self._running = True
        try:
            while not self.should_stop:
                if self._wanted is not None or self._waiters:
                    await self._apply_wanted(consumer)
                if not self.owned:
                    self._wake.clear()
                    await self.wait_for_stopped(self._wake.wait(), timeout=1.0)
                    continue
                timeout = _IN_FLIGHT_POLL_MS if self._in_flight else _IDLE_POLL_MS
                fetched = await consumer.getmany(
                    timeout_ms=timeout, max_records=self.settings.batch_max
                )
                self.behind = self.full(fetched)
                if fetched:
                    await self._handle(fetched)
                await self._settle(MAX_IN_FLIGHT)
                if time.monotonic() - self._last_commit >= self.settings.input_commit_interval_s:
                    self._commit_in_background()
        finally:
            self._running = False
            self._stopped_reading.set()

    def full(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        """A fetch of ``batch_max`` records: more are likely waiting."""
        return sum(map(len, fetched.values())) >= self.settings.batch_max

    async def _handle(
        self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        by_partition: dict[int, list[ConsumerRecord[bytes, bytes]]] = {}
        done: dict[TopicPartition, int] = {}
        for tp in sorted(fetched, key=lambda tp: (tp.partition, tp.topic)):
            records = fetched[tp]
            if records and tp.partition in self.owned:
                by_partition.setdefault(tp.partition, []).extend(records)
                done[tp] = records[-1].offset + 1
        # Each partition's output is handed to the producer as soon as it is applied:
        # the first partition's changes do not wait for the others to be applied.
        sends = []
        for partition, records in by_partition.items():
            self._apply(partition, records)
            sends.append(await self._send())
        if sends:
            self._in_flight.append((done, sends[0] if len(sends) == 1 else asyncio.gather(*sends)))

    async def _settle(self, keep: int) -> None:
        """Mark done what is acknowledged, in order; wait until at most ``keep``
        sends are in flight."""
        in_flight = self._in_flight
        while in_flight and (len(in_flight) > keep or in_flight[0][1].done()):
            done, acknowledged = in_flight[0]
            await acknowledged
            in_flight.popleft()
            self._done.update(done)

    def _commit_in_background(self) -> None:
        """The periodic commit, off the read loop (its round trip, and the group
        coordinator lookup of the first one, would stall reading); one at a time.
        A failure crashes the service, which stops the worker."""
        self._last_commit = time.monotonic()
        if self._committing is None or self._committing.done():
            self._committing = self.add_future(self.commit())

    async def commit(self) -> None:
        """Commit the offsets of the records whose outputs are acknowledged.
        Commits run one after the other, so an older one never lands last."""
        consumer = self._consumer
        self._last_commit = time.monotonic()
        if consumer is None:
            return
        async with self._commit_lock:
            assigned = consumer.assignment()
            todo = {
                tp: offset
                for tp, offset in self._done.items()
                if self._committed.get(tp) != offset and tp in assigned
            }
            if todo:
                await consumer.commit(todo)
                self._committed.update(todo)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records between the done offset and the end of each owned input
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
            done = self._done.get(tp)
            if done is None:
                done = await consumer.committed(tp)  # committed before this assignment
            if done is None:
                done = (await consumer.beginning_offsets([tp]))[tp]
            lags[tp.topic, tp.partition] = max(0, ends[tp] - done)
        return lags
