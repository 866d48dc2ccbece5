"""The worker's read side and bookkeeping: metrics, gauges, the Redis profiles and the
live funnel, per batch and per rebalance, and whether the worker is ready.

Per batch (:meth:`Observer.batch`, called once the batch's outputs are confirmed):
emit and event latency, stage changes into the per-partition customers gauge, the
time-in-stage histogram and the live funnel, and the changed states handed to the
Redis profile store (which never waits; a store that stopped on an error retrying
cannot fix raises here, and the input reader's crash stops the worker).

Per rebalance: when the new assignment is known, the partitions that moved away
are taken off the gauge; when table recovery has completed, the partitions that
arrived are counted from their recovered records and added. So summed over the
workers the gauge is the number of customers per stage, save for the moments of a
rebalance between assignment and recovery.

Every ``metrics_interval_s``: consumer lag of the owned partitions (the touchpoint
topics of the input reader, the timers topic of the timers agent) and the table size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from mode import Service

from engine.catalog import Catalog
from engine.journey.funnel import Funnel
from engine.metrics import StageGauge
from engine.profiles import ProfileExtras, last_trigger, timer_extras
from engine.redis_client import describe
from engine.redis_store import ProfileStore, ProfileStoreFailed
from engine.worker.processor import BatchResult
from engine.worker.table_view import TableView

if TYPE_CHECKING:
    from engine.worker.app import JourneyApp

log = logging.getLogger(__name__)

#: Consecutive failed lag refreshes (one per interval) before the worker stops.
MAX_REFRESH_FAILURES = 12


class Observer:
    """Bookkeeping of one worker; built by :class:`~engine.worker.app.JourneyApp`."""

    def __init__(self, journey: JourneyApp) -> None:
        self.journey = journey
        self.app = journey.app
        self.settings = journey.settings
        self.metrics = journey.metrics
        self.clock = journey.processor.clock
        self.gauge = StageGauge(journey.metrics.customers)
        self.funnel = Funnel([journey.model])
        self.table = TableView(journey.table, journey.catalog[Catalog.TOUCHPOINTS].partitions)
        self.changelog = journey.table.changelog_topic.get_topic_name()
        self.timers_topic = journey.catalog.name(Catalog.TIMERS)
        self.store: ProfileStore | None = (
            ProfileStore.from_settings(
                journey.settings, journey.metrics, timer_extras(journey.engine.pending_timers)
            )
            if journey.settings.redis_enabled
            else None
        )
        #: Table partitions counted in the gauge: the ones this worker owns.
        self.owned: frozenset[int] = frozenset()
        self.recovered = False
        self._consuming = False  # a partition assignment completed once: the consumer runs
        self.waiting_for = "the first partition assignment"
        self._generation = 0
        self._refresh_failures = 0
        app = journey.app
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_rebalance_complete.connect(self._on_recovered)
        app.service(_service_for(self))

    # ------------------------------------------------------------------ per batch

    def batch(self, partition: int, result: BatchResult, processed: float) -> None:
        """A batch of ``partition`` whose outputs are confirmed; ``processed`` is the
        ``time.monotonic()`` reading taken when the processor returned."""
        metrics = self.metrics
        emit_s = time.monotonic() - processed
        metrics.emit_latency.observe(emit_s)
        changed = result.changed
        if changed:
            processed_at = self.clock.now() - timedelta(seconds=emit_s)
            observe = metrics.event_latency.observe
            for state, _index in changed.values():
                if state.last_seen is not None:
                    observe(max(0.0, (processed_at - state.last_seen).total_seconds()))
        self.applied(partition, result)

    def applied(self, partition: int, result: BatchResult) -> None:
        """What a batch or fired timers of ``partition`` changed, once written: the
        table's key count, the Redis profiles, the stage gauge, the time in stage
        and the funnel."""
        metrics = self.metrics
        changed = result.changed
        if changed:
            self.table.note_written(partition, changed)
            if self.store is not None:
                decisions = result.decisions
                extras = (
                    {
                        key.decode("utf-8"): ProfileExtras(last_trigger=last_trigger(decision))
                        for key, decision in decisions.items()
                    }
                    if decisions
                    else None
                )
                self.store.offer((state for state, _index in changed.values()), extras)
        changes = result.changes
        if changes:
            if partition in self.owned:
                self.gauge.apply(partition, changes)
            metrics.observe_stage_changes(changes)
            self.funnel.add_all(changes)

    # ------------------------------------------------------------------ rebalances

    def _active_partitions(self) -> frozenset[int]:
        return frozenset(
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.changelog
        )

    async def _on_revoked(self, *args: Any, **kwargs: Any) -> None:
        self._generation += 1
        self.recovered = False
        self.waiting_for = "a rebalance: partitions revoked, waiting for the new assignment"

    async def _on_assigned(self, *args: Any, **kwargs: Any) -> None:
        self._generation += 1
        self.recovered = False
        self.waiting_for = "table recovery after a rebalance"
        self.metrics.rebalances.inc()
        self._keep_only(self._active_partitions())

    async def _on_recovered(self, *args: Any, **kwargs: Any) -> None:
        """Table recovery completed (streams resume right after this returns)."""
        generation = self._generation
        actives = self._active_partitions()
        self._keep_only(actives)
        arrived = set(actives - self.owned)
        began = time.monotonic()
        counts = await self.table.stage_counts(arrived, lambda: self._generation == generation)
        if counts is None:
            return  # another rebalance started: the next recovery counts them
        for partition in sorted(arrived):
            self.gauge.assign(partition, counts[partition])
        if arrived:
            log.info(
                "customers per stage of partitions %s counted in %.2fs: %s",
                sorted(arrived),
                time.monotonic() - began,
                sum(sum(c.values()) for c in counts.values()),
            )
        self.owned = actives
        self.metrics.assigned_partitions.set(len(actives))
        self.metrics.table_size.labels(self.journey.table.name).set(self.table.size(actives))
        self.recovered = self._consuming = True

    def _keep_only(self, actives: frozenset[int]) -> None:
        for partition in self.owned - actives:
            self.gauge.revoke(partition)
        self.owned = self.owned & actives

    # ------------------------------------------------------------------ readiness

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): table recovered, reader and sink running, store usable."""
        if not self.recovered:
            return False, f"waiting for {self.waiting_for}"
        for name, service in (("input reader", self.journey.reader), ("sink", self.journey.sink)):
            if not _running(service):
                return False, f"the {name} is not running"
        if self.store is not None and self.store.failed is not None:
            return False, f"the Redis profile store stopped: {describe(self.store.failed)}"
        return True, "ready"

    # ------------------------------------------------------------------ periodic

    async def start(self) -> None:
        if self.store is not None:
            await self.store.start()

    async def stop(self) -> None:
        if self.store is not None:
            await self.store.stop()

    async def refresh(self) -> None:
        """Consumer lag and table size; raises if the profile store has stopped."""
        store = self.store
        if store is not None and store.failed is not None:
            raise ProfileStoreFailed(
                f"Redis profile store stopped: {describe(store.failed)}"
            ) from store.failed
        if not self._consuming:
            return
        try:
            lags = await self._lags()
        except (KafkaError, ConsumerNotStarted) as exc:
            self._refresh_failures += 1
            if self._refresh_failures >= MAX_REFRESH_FAILURES:
                raise
            log.warning(
                "consumer lag not refreshed (%d in a row; stopping at %d): %r",
                self._refresh_failures,
                MAX_REFRESH_FAILURES,
                exc,
            )
            return
        self._refresh_failures = 0
        self.metrics.set_consumer_lag(lags)
        if self.recovered:
            self.metrics.table_size.labels(self.journey.table.name).set(self.table.size(self.owned))

    async def _lags(self) -> dict[tuple[str, int], int]:
        lags: dict[tuple[str, int], int] = {}
        consumer: Any = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == self.timers_topic]
        if tps:
            ends: Mapping[Any, int] = await consumer.highwaters(*tps)
            committed = consumer._committed_offset
            missing = [tp for tp in tps if committed.get(tp) is None]
            starts: Mapping[Any, int] = await consumer.earliest_offsets(*missing) if missing else {}
            for tp in tps:
                done = committed.get(tp)
                if done is None:
                    done = starts.get(tp, 0)
                lags[tp.topic, tp.partition] = max(0, ends[tp] - done)
        lags.update(await self.journey.reader.lag())
        return lags


def _running(service: Service) -> bool:
    return service.started and not service.crashed and not service.should_stop


def _service_for(observer: Observer) -> type[Service]:
    interval = observer.settings.metrics_interval_s

    class _ObserverService(Service):
        """Starts and stops the profile store and refreshes the periodic metrics."""

        async def on_start(self) -> None:
            await observer.start()

        async def on_stop(self) -> None:
            await observer.stop()

        @Service.task
        async def _refresh(self) -> None:
            while not self.should_stop:
                await self.sleep(interval)
                if not self.should_stop:
                    await observer.refresh()

    return _ObserverService
