"""The Faust app: one agent over the touchpoints, one customers table.

The agent only turns Faust events into :class:`Record` and hands them to the
:class:`Processor`; everything else lives outside the ``async for`` loop.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import faust
from faust.streams import _current_event  # the context behind faust.current_event()
from faust.types import EventT
from mode.supervisors import CrashingSupervisor
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.clock import Clock, WallClock
from engine.journey import StageMachine, resolve_model
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.processor import Processor, Record
from engine.worker.state_store import StateStore
from engine.worker.web import add_metrics_page

log = logging.getLogger(__name__)

TABLE_NAME = "customers"


class JourneyApp:
    """The Faust app with its agent, table and processor, built from settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = Catalog(settings)
        self.model = resolve_model(settings.model)
        self.machine = StageMachine(
            self.model,
            dedupe_window=timedelta(seconds=settings.dedupe_window_s),
            dedupe_max_ids=settings.dedupe_max_ids,
            history_limit=settings.history_limit,
        )
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        partitions = self.catalog[Catalog.TOUCHPOINTS].partitions
        datadir = settings.data_path / settings.app_id
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.app_id,
            broker=f"kafka://{settings.kafka_bootstrap}",
            store=settings.store,
            datadir=str(datadir),
            topic_partitions=partitions,
            topic_replication_factor=1,
            topic_allow_declare=True,
            key_serializer="raw",
            value_serializer="raw",
            processing_guarantee=settings.processing_guarantee,
            web_enabled=settings.web_enabled,
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_bind=settings.web_host,
            producer_linger=0.005,
            autodiscover=False,
        )
        self.table = self.app.Table(
            TABLE_NAME,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
        )
        self.source = self.app.topic(
            self.catalog.name(Catalog.TOUCHPOINTS),
            self.catalog.name(Catalog.REKEYED),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )
        self.store = StateStore(self.table, settings.state_cache_size)
        self.app.on_partitions_revoked.connect(self._partitions_moved)
        self.app.on_partitions_assigned.connect(self._partitions_moved)
        self.processor = Processor(
            machine=self.machine,
            states=self.store,
            catalog=self.catalog,
            clock=clock or WallClock(),
            metrics=self.metrics,
            max_message_bytes=settings.max_message_bytes,
        )
        add_metrics_page(self.app, self.registry)
        # A crashed agent stops the worker: an infrastructure or programming error
        # must not leave a worker that looks alive but processes nothing.
        self.app.agent(self.source, name="journey", supervisor_strategy=CrashingSupervisor)(
            self._agent
        )

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        settings = self.settings
        assert isinstance(stream, faust.Stream)  # take_events is on the class only
        # Changelog writes queue in Faust's producer buffer, which warns and stalls
        # the consumer above 100 pending records; a batch writes up to batch_max.
        buffer = self.app.producer.buffer
        buffer.max_messages = max(buffer.max_messages, 2 * settings.batch_max)
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            await self._handle(events)

    async def _handle(self, events: Sequence[EventT[bytes]]) -> None:
        """One batch: apply, send without waiting one by one, one table write per
        changed customer, then wait for every send before Faust acks the batch."""
        result = self.processor.process([_record(e.message) for e in events])
        send = self.app.producer.send
        pending = [
            await send(out.topic, out.key, out.value, None, None, out.headers)
            for out in result.outgoing
        ]
        store = self.store
        for key, (state, index) in result.changed.items():
            # The changelog write goes to the partition of the record that changed
            # the customer; Faust reads it from the current event.
            token = _current_event.set(weakref.ref(events[index]))
            try:
                store.put(key, state)
            finally:
                _current_event.reset(token)
        if pending:
            await asyncio.gather(*pending)

    async def _partitions_moved(self, *args: Any, **kwargs: Any) -> None:
        self.store.forget_all()


def _record(message: Any) -> Record:
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=list(message.headers or ()),
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
    )
