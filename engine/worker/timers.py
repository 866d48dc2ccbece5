"""The worker's timers: a due-time index per owned partition, its clock, the firing.

Pending timers are not stored anywhere: they follow from the customer records
(``engine.journey.timers``). Each partition the worker owns has a
:class:`~engine.journey.TimerIndex` holding every customer's next timer; the
agents reschedule a customer after each change, a rebuild fills the index from
the table when the partition is assigned, and the index is dropped when the
partition is revoked. :class:`TimerService` pops what is due every tick and
applies it (``timer_agent.install``: on the event loop, through the store and sink
the input reader uses, like a touchpoint).

Clocks: ``wall`` is the machine's clock; ``event`` is, per partition, the newest
event time the partition has seen (``PartitionClocks``, moved by the processor
after each record and set from the newest ``last_seen`` on a rebuild).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from mode import Service

from engine.clock import Clock
from engine.journey import (
    CustomerState,
    PartitionClocks,
    StateError,
    Timer,
    TimerIndex,
    TriggerEngine,
)
from engine.journey.state import to_ms
from engine.journey.timers import history_stages, timer_view
from engine.journey.trigger_rules import TriggerRules
from engine.metrics import Metrics
from engine.worker.state_store import UnreadableState

log = logging.getLogger(__name__)

#: Timers sent in one go; more due ones are sent right after, without waiting a tick.
#: Popping and encoding a timer takes tens of microseconds and holds the event loop:
#: a few hundred at a time keep that under ~10 ms, so touchpoints are not held up
#: behind a burst of due timers (the wait for each send's acknowledgement lets
#: them through).
FIRE_BATCH = 256
#: How long a rebuild runs before it lets the event loop run other work.
REBUILD_SLICE_S = 0.02

Due = tuple[int, bytes, Timer]
"""(partition, customer key, timer)"""


@dataclass(frozen=True, slots=True)
class RebuildStats:
    partitions: tuple[int, ...]
    keys: int
    """Keys in the table (all partitions this process holds)."""
    customers: int
    """Customers of the rebuilt partitions, each decoded once."""
    pending: int
    """Of them, customers with a pending timer."""
    seconds: float
    """From start to end, processing in between included."""
    busy_seconds: float
    """The rebuild's own work: the time between its yields to the event loop."""

    @property
    def seconds_per_100k(self) -> float:
        """Busy time per 100,000 customers."""
        return self.busy_seconds * 100_000 / max(self.customers, 1)


def decode_view(
    raw: bytes, rules: TriggerRules, with_history: frozenset[str] | None = None
) -> CustomerState:
    """A stored record as far as timers need it (``timer_view``)."""
    try:
        return timer_view(orjson.loads(raw), rules, with_history)
    except (orjson.JSONDecodeError, StateError) as exc:
        raise UnreadableState(f"stored customer record cannot be read: {exc}") from exc


class PartitionTimers:
    """The due-time indexes and clocks of the partitions this worker owns."""

    def __init__(
        self, engine: TriggerEngine, partitions: int, clock: Clock, *, event_time: bool
    ) -> None:
        self.engine = engine
        self.partitions = partitions
        self.clock = clock
        self.clocks: PartitionClocks | None = PartitionClocks() if event_time else None
        self.indexes: dict[int, TimerIndex] = {}

    def partition_of(self, key: bytes) -> int:
        """The partition of a customer key (Kafka's default partitioner, as everywhere)."""
        return int(murmur2(key) & 0x7FFFFFFF) % self.partitions

    def now(self, partition: int) -> datetime:
        """The processing clock of a partition."""
        clocks = self.clocks
        return self.clock.now() if clocks is None else clocks.now(partition)

    def assign(self, partitions: Iterable[int]) -> None:
        """Give newly owned partitions an empty index (for :meth:`rebuild` to fill)."""
        for partition in partitions:
            self.indexes.setdefault(partition, TimerIndex())

    def pending(self) -> int:
        return sum(len(index) for index in self.indexes.values())

    def schedule(self, partition: int, key: bytes, state: CustomerState | None) -> None:
        """Make the customer's next timer (or none) the one pending in the index.

        A partition without an index is not (or no longer) owned: nothing to do,
        the owner's rebuild reads the record from the table."""
        index = self.indexes.get(partition)
        if index is not None:
            index.schedule(key, self.engine.next_timer(state))

    def schedule_changed(
        self, partition: int, changed: Mapping[bytes, tuple[CustomerState, int]]
    ) -> None:
        """After a batch: reschedule every customer it changed (``BatchResult.changed``)."""
        index = self.indexes.get(partition)
        if index is None or not changed:
            return
        schedule, next_timer = index.schedule, self.engine.next_timer
        for key, (state, _) in changed.items():
            schedule(key, next_timer(state))

    def pop_due(self, limit: int = FIRE_BATCH) -> list[Due]:
        """Remove and return the timers due by each partition's clock (at most ``limit``)."""
        out: list[Due] = []
        for partition, index in self.indexes.items():
            if len(out) >= limit:
                break
            now_ms = to_ms(self.now(partition))
            out.extend(
                (partition, key, timer) for key, timer in index.pop_due(now_ms, limit - len(out))
            )
        return out

    def revoke(self, partitions: Iterable[int]) -> None:
        """The partitions moved away: drop their index and forget their clock."""
        for partition in partitions:
            self.indexes.pop(partition, None)
            if self.clocks is not None:
                self.clocks.forget(partition)

    async def rebuild(self, partitions: set[int], table: Mapping[bytes, bytes]) -> RebuildStats:
        """Fill the indexes of ``partitions`` from the stored customer records.

        Runs alongside processing: it yields to the event loop every
        ``REBUILD_SLICE_S`` and reads each record when it gets to it, so a customer
        the agents changed meanwhile is scheduled from its newest record. Only what
        timers need is decoded (``timer_view``). A record that cannot be read
        raises ``UnreadableState`` (the changelog is corrupt).
        """
        began = time.monotonic()
        self.assign(partitions)
        keys = list(table)  # new customers are scheduled by the agents themselves
        clocks, next_timer, partition_of = self.clocks, self.engine.next_timer, self.partition_of
        rules = self.engine.rules
        with_history = history_stages(rules)
        customers = pending = 0
        busy, slice_start = 0.0, time.perf_counter()
        for n, key in enumerate(keys):
            if not n & 255 and time.perf_counter() - slice_start > REBUILD_SLICE_S:
                busy += time.perf_counter() - slice_start
                await asyncio.sleep(0)
                slice_start = time.perf_counter()
            partition = partition_of(key)
            if partition not in partitions:
                continue
            index = self.indexes.get(partition)
            raw = table.get(key)
            if index is None or raw is None:  # revoked meanwhile, or deleted
                continue
            state = decode_view(raw, rules, with_history)
            timer = next_timer(state)
            customers += 1
            if timer is not None:
                index.schedule(key, timer)
                pending += 1
            if clocks is not None and state.last_seen is not None:
                clocks.observe(partition, state.last_seen)
        busy += time.perf_counter() - slice_start
        stats = RebuildStats(
            tuple(sorted(partitions)),
            len(keys),
            customers,
            pending,
            time.monotonic() - began,
            busy,
        )
        # The records just decoded are gone; what is left (table, index) lives long:
        # keep it out of the collector's full passes, which otherwise take tens of ms.
        gc.freeze()
        log.info(
            "timer index rebuilt for partitions %s: %d pending timers from %d customers "
            "(%d keys) in %.2fs, %.2fs of it busy (%.2fs per 100k customers)",
            list(stats.partitions),
            stats.pending,
            stats.customers,
            stats.keys,
            stats.seconds,
            stats.busy_seconds,
            stats.seconds_per_100k,
        )
        return stats


class TimerService(Service):
    """Fires due timers every ``tick_s``: ``fire`` applies them and returns once
    what they wrote and emitted is acknowledged. A failure stops the worker. A
    timer lost in a crash before that is not lost for good: the rebuild after the
    restart derives it again from the customer's record.

    ``sink``, if given, is a service ``fire`` sends through that this service
    owns: it starts before the first tick and stops only after the firing in
    progress, if any, is acknowledged, so a worker shutting down never sends to
    a closed producer. Without one, the owner of the sink stops this service
    first.

    ``behind``: whether the input is behind (the input reader's last fetch was
    full). While it is, a tick fires one slice (``FIRE_BATCH``) only: timers due
    in a backfill take at most about a tenth of the event loop and catch up once
    the input has, instead of slowing the touchpoints they follow from."""

    def __init__(
        self,
        timers: PartitionTimers,
        fire: Callable[[list[Due]], Awaitable[None]],
        metrics: Metrics,
        tick_s: float,
        sink: Service | None = None,
        behind: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.timers = timers
        self.fire = fire
        self.metrics = metrics
        self.tick_s = tick_s
        self.sink = sink
        self.behind = behind
        self._firing = asyncio.Lock()

    async def on_start(self) -> None:
        if self.sink is not None:
            await self.add_runtime_dependency(self.sink)

    async def on_stop(self) -> None:
        # Children (the sink) stop right after this: let the send in flight end.
        await self.settled()

    async def settled(self) -> None:
        """Returns once the firing in progress, if any, is over (acknowledged)."""
        async with self._firing:
            pass

    @Service.task
    async def _tick(self) -> None:
        while not self.should_stop:
            await self.sleep(self.tick_s)
            async with self._firing:
                if self.should_stop:
                    break
                await self.fire_due()

    async def fire_due(self) -> int:
        """Fire everything due now (one slice while the input is behind); returns
        how many timers went out."""
        timers, metrics = self.timers, self.metrics
        wall = timers.clocks is None
        fired, lag = metrics.timers_fired, metrics.timer_lag
        total = 0
        while not self.should_stop:
            due = timers.pop_due(FIRE_BATCH)
            if not due:
                break
            await self.fire(due)
            total += len(due)
            now_ms = to_ms(timers.clock.now())
            for _, _, timer in due:
                fired.labels(timer.kind.value).inc()
                if wall:
                    lag.observe(max(0, now_ms - timer.due_ms) / 1000)
            if len(due) < FIRE_BATCH or (self.behind is not None and self.behind()):
                break
        metrics.timers_pending.set(timers.pending())
        return total
