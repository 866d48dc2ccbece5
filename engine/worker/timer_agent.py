"""The agent of the timers topic: applies fired timers to the customers they belong to.

A timer message (``messages.timer``) arrives on the partition that owns the
customer. The agent decodes it (a record it cannot use goes to the dead-letter
topic with the reason, and the others go on), applies it with
``TriggerEngine.apply_timer`` at the partition's clock, writes a changed record
to the table and its changelog exactly as the touchpoint path does (same sink,
under the timer message's partition), reschedules the customer and sends the
effects: stage changes, triggers, policy decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP, EventT
from mode.supervisors import CrashingSupervisor

from engine import messages
from engine.catalog import Catalog
from engine.ingest import BadInput
from engine.journey import TriggerEngine
from engine.messages import dead_letter_headers, decode_timer
from engine.metrics import Metrics
from engine.worker.effects import EffectRouter
from engine.worker.processor import Outgoing
from engine.worker.sink import Sink
from engine.worker.state_store import StateStore
from engine.worker.table_writes import flush, write_states
from engine.worker.timers import Due, PartitionTimers, TimerService

if TYPE_CHECKING:
    from engine.worker.app import JourneyApp

log = logging.getLogger(__name__)

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
    ) -> None:
        self.engine = engine
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
        await flush(self.table, self.sink)

    def apply(self, event: EventT[bytes]) -> None:
        message = event.message
        partition = message.partition
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
        now = self.timers.now(partition)
        store, sink = self.store, self.sink
        state = store.get(key)
        new, effects = self.engine.apply_timer(state, timer, now)
        if new is not None and new is not state:
            # Under the timer's partition, the customer's (the topic is co-partitioned).
            write_states(self.table, store, sink, partition, [(key, new)])
        self.timers.schedule(partition, key, new)
        out: list[Outgoing] = []
        self.router.route_all(key, effects, now, out)
        for record in out:
            sink.add(record.topic, record.key, record.value, record.headers)

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

    # Fired timers go out through their own sink: they need no coordination with
    # the agents' acknowledgements (a lost one is derived again by the rebuild).
    timer_sink = Sink(settings)

    async def fire(due: list[Due]) -> None:
        for partition, key, timer in due:
            value = messages.dumps(messages.timer(timer))
            timer_sink.add(timers_topic, key, value, partition=partition)
        await timer_sink.flush()

    metrics, tick_s = journey.metrics, settings.timer_tick_s

    @app.service
    class _TimerService(TimerService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(timers, fire, metrics, tick_s, timer_sink, **kwargs)

    rebuilding: set[asyncio.Future[Any]] = set()

    async def revoked(*args: Any, **kwargs: Any) -> None:
        tps: set[TP] = args[1]  # (sender, revoked): Faust's on_partitions_revoked.send(revoked)
        for future in list(rebuilding):
            future.cancel()
        timers.revoke({tp.partition for tp in tps if tp.topic == owned_topic})

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
