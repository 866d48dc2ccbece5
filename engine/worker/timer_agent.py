"""Fired timers applied to the customers they belong to.

The timer service pops the due timers of the partitions this worker owns and
applies each (``TimerAgent.apply_timer``) with ``TriggerEngine.apply_timer`` at
the partition's clock, on the event loop between two fetches of the input
reader: a changed record goes to the table and its changelog exactly as on the
touchpoint path (same store and sink, under the customer's partition), the
customer is rescheduled, and the effects are sent: stage changes, triggers,
policy decisions. Once acknowledged, the changes go to the same bookkeeping as a
touchpoint batch's (stage gauge, funnel, Redis profiles).

The timers topic is what Faust assigns (co-partitioned with the table, so it
says which partitions this worker owns). Timers are not sent to it: a timer
message there (``messages.timer``, written by hand or by an older version) is
still applied by the topic's agent, and a record it cannot use goes to the
dead-letter topic with the reason while the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.types import TP, EventT
from mode.supervisors import CrashingSupervisor

from engine.catalog import Catalog
from engine.ingest import BadInput
from engine.journey import StageChanged, Timer, TriggerEngine
from engine.messages import dead_letter_headers, decode_timer
from engine.metrics import Metrics
from engine.worker.effects import EffectRouter
from engine.worker.processor import BatchResult, Outgoing
from engine.worker.sink import Sink
from engine.worker.state_store import StateStore
from engine.worker.table_writes import flush, write_states
from engine.worker.timers import Due, PartitionTimers, TimerService

if TYPE_CHECKING:
    from engine.worker.app import JourneyApp

log = logging.getLogger(__name__)

Observe = Callable[[int, BatchResult], None]

#: Timer messages taken together (small records; one flush for all of them).
TAKE = 256


class TimerAgent:
    """``await agent(stream)`` for the timers topic (run under a CrashingSupervisor)."""

    def __init__(
        self,
        *,
        engine: TriggerEngine,
        timers: PartitionTimers,
        store: StateStore,
        table: Any,
        sink: Sink,
        router: EffectRouter,
        catalog: Catalog,
        metrics: Metrics,
        within_s: float,
        start_sink: Callable[[], Awaitable[None]],
        observe: Observe | None = None,
    ) -> None:
        """``observe(partition, result)``: the bookkeeping of what timers changed
        (stage gauge, funnel, Redis profiles), once it is written."""
        self.engine = engine
        self.observe = observe
        self._applied: dict[int, BatchResult] = {}
        self.start_sink = start_sink
        self.timers = timers
        self.store = store
        self.table = table
        self.sink = sink
        self.router = router
        self.metrics = metrics
        self.within_s = within_s
        self.dead_letter = catalog.name(Catalog.DEAD_LETTER)

    async def run(self, stream: faust.StreamT[bytes]) -> None:
        await self.start_sink()
        assert isinstance(stream, faust.Stream)  # take_events is on the class only
        async for events in stream.take_events(TAKE, self.within_s):
            await self.handle(events)

    async def handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Apply the timers; the messages are acknowledged once every write and
        output is (Faust acks them after this returns)."""
        for event in events:
            self.apply(event)
        await self.flush()

    async def flush(self) -> None:
        """Send what the timers applied so far wrote and emitted; once it is all
        acknowledged, hand the changes to ``observe``."""
        applied, self._applied = self._applied, {}
        await flush(self.table, self.sink)
        if self.observe is not None:
            for partition, result in applied.items():
                self.observe(partition, result)

    def apply(self, event: EventT[bytes]) -> None:
        message = event.message
        try:
            timer = decode_timer(message.value)
            key = timer.customer_id.encode("utf-8")
            if message.key != key:
                raise BadInput(
                    "bad_field",
                    f"the timer record's key {message.key!r:.80} is not its customer_id "
                    f"{timer.customer_id!r:.80}",
                )
        except BadInput as exc:
            self._reject(message, exc)
            return
        self.apply_timer(message.partition, key, timer)

    def apply_timer(self, partition: int, key: bytes, timer: Timer) -> None:
        """Apply one due timer of a customer of ``partition`` at the partition's
        clock: the changed record goes to the table and its changelog, the effects
        to the sink (sent by the caller's flush), the customer is rescheduled."""
        now = self.timers.now(partition)
        store, sink = self.store, self.sink
        state = store.get(key)
        new, effects = self.engine.apply_timer(state, timer, now)
        applied = self._applied.get(partition)
        if applied is None:
            applied = self._applied[partition] = BatchResult()
        if new is not None and new is not state:
            # Under the timer's partition, the customer's (the topic is co-partitioned).
            write_states(self.table, store, sink, partition, [(key, new)])
            applied.changed[key] = (new, 0)
        self.timers.schedule(partition, key, new)
        out: list[Outgoing] = []
        self.router.route_all(key, effects, now, out)
        for record in out:
            sink.add(record.topic, record.key, record.value, record.headers)
        applied.changes.extend(e for e in effects if isinstance(e, StageChanged))
        applied.decisions.update(self.router.take_decisions())

    def _reject(self, message: Any, error: BadInput) -> None:
        log.error(
            "unusable timer record at %s[%s]@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            error,
        )
        headers = dead_letter_headers(
            error,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            failed_at=self.timers.clock.now(),
        )
        self.metrics.dead_letters.labels(error.reason).inc()
        self.sink.add(self.dead_letter, message.key, message.value, headers)


def install(journey: JourneyApp) -> None:
    """Wire the timers into the app: the agent of the timers topic, the timer
    service (started with the app's services, after the first recovery), index
    rebuilds after each recovery and index drops on revocation."""
    app, catalog, settings, timers = journey.app, journey.catalog, journey.settings, journey.timers
    timers_topic = catalog.name(Catalog.TIMERS)
    owned_topic = journey.owned_topic
    agent = TimerAgent(
        engine=journey.engine,
        timers=timers,
        store=journey.store,
        table=journey.table,
        sink=journey.sink,
        router=journey.router,
        catalog=catalog,
        metrics=journey.metrics,
        within_s=settings.agent_within_s,
        start_sink=journey.start_sink,
        observe=journey.observe.applied,
    )
    topic = app.topic(
        timers_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=catalog[Catalog.TIMERS].partitions,
    )
    app.agent(topic, name="timers", supervisor_strategy=CrashingSupervisor)(agent.run)

    async def fire(due: list[Due]) -> None:
        # Applied here, on the event loop between two fetches of the input reader,
        # through the same store and sink: no timer message, no second pass through
        # Faust's per-message path. The records of a timer lost in a crash before its
        # changelog write is acknowledged are derived again by the index rebuild.
        await journey.start_sink()
        for partition, key, timer in due:
            agent.apply_timer(partition, key, timer)
        await agent.flush()

    service = TimerService(
        timers, fire, journey.metrics, settings.timer_tick_s, behind=lambda: journey.reader.behind
    )
    # Started with the app's services (Faust starts an instance as it is; its
    # annotation says classes only); stopped before the sink closes.
    app.service(cast("type[TimerService]", service))

    async def stop_firing(*args: Any, **kwargs: Any) -> None:
        await service.stop()

    app.on_before_shutdown.connect(stop_firing)

    rebuilding: set[asyncio.Future[Any]] = set()

    async def revoked(*args: Any, **kwargs: Any) -> None:
        tps: set[TP] = args[1]  # (sender, revoked): Faust's on_partitions_revoked.send(revoked)
        for future in list(rebuilding):
            future.cancel()
        timers.revoke({tp.partition for tp in tps if tp.topic == owned_topic})
        # Timers already popped go on to their changelog writes before the
        # partitions are handed on; none of a revoked partition is popped after this.
        await service.settled()

    async def recovered() -> None:
        owned = journey.owned_partitions()
        timers.revoke(set(timers.indexes) - owned)
        new = owned - set(timers.indexes)
        if new:
            # Empty indexes at once (the agents resume right after this), filled
            # in the background; a failure (a corrupt record) stops the worker.
            timers.assign(new)
            future = app.add_future(timers.rebuild(new, journey.store.table))
            rebuilding.add(future)
            future.add_done_callback(rebuilding.discard)

    app.on_partitions_revoked.connect(revoked)
    journey.table.on_recover(recovered)
