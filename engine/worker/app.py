"""The Faust app: one agent over the touchpoints, one customers table.

The agent only turns Faust events into :class:`Record` and hands them to the
:class:`Processor`; everything else lives outside the ``async for`` loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import faust
from faust.types import EventT
from mode.supervisors import CrashingSupervisor
from prometheus_client import CollectorRegistry

from engine import envelope
from engine.catalog import Catalog
from engine.clock import Clock, WallClock
from engine.ingest import BadInput
from engine.messages import dead_letter_headers
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.api import add_api
from engine.worker.batcher import Batcher
from engine.worker.effects import EffectRouter
from engine.worker.observe import Observer
from engine.worker.processor import BatchResult, Processor, Record
from engine.worker.recovery import BulkRecoveryTableManager
from engine.worker.sink import Sink
from engine.worker.state_store import StateStore
from engine.worker.table_writes import flush, write_states
from engine.worker.timer_agent import install as install_timers
from engine.worker.timers import PartitionTimers
from engine.worker.triggering import trigger_engine
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
        self.engine = trigger_engine(settings)  # the stage machine with triggers
        self.machine, self.model = self.engine.machine, self.engine.model
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
            # Each message is a batch of up to batch_max touchpoints: buffer few.
            stream_buffer_maxsize=64,
            broker_max_poll_records=64,
            autodiscover=False,
            TableManager=BulkRecoveryTableManager,
            table_standby_replicas=settings.standby_replicas,
        )
        self.table = self.app.Table(
            TABLE_NAME,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
        )
        self.source = self.app.topic(
            self.catalog.name(Catalog.BATCHES),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )
        # The agent writes the store directly and sends the changelog records
        # itself, in record batches (engine/worker/sink.py), instead of one
        # Faust send per table write.
        self.store = StateStore(_TableStore(self.table), settings.state_cache_size)
        self.sink = Sink(settings)
        self._sink_lock = asyncio.Lock()
        self.app.on_partitions_revoked.connect(self._partitions_moved)
        self.app.on_partitions_assigned.connect(self._partitions_moved)
        self.timers = PartitionTimers(
            self.engine, partitions, clock or WallClock(), event_time=settings.clock == "event"
        )
        self.router = EffectRouter(self.catalog, self.metrics)
        self.processor = Processor(
            machine=self.engine,
            states=self.store,
            catalog=self.catalog,
            clock=clock or WallClock(),
            metrics=self.metrics,
            max_message_bytes=settings.max_message_bytes,
            effects=self.router,
            event_time=self.timers.clocks,
        )
        self.dead_letter = self.catalog.name(Catalog.DEAD_LETTER)
        batcher_settings, batcher_catalog = settings, self.catalog

        @self.app.service
        class _Batcher(Batcher):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(batcher_settings, batcher_catalog, **kwargs)

        add_metrics_page(self.app, self.registry)
        self.observe = Observer(self)
        add_api(self, self.observe)
        # A crashed agent stops the worker: an infrastructure or programming error
        # must not leave a worker that looks alive but processes nothing.
        self.app.agent(self.source, name="journey", supervisor_strategy=CrashingSupervisor)(
            self._agent
        )
        install_timers(self)

    async def start_sink(self) -> None:
        async with self._sink_lock:
            sink = self.sink
            if not sink._started.is_set():
                # Started here, not at app start: the agent may get its first batch
                # before Faust starts extra services. The app stops it on shutdown.
                await self.app.add_runtime_dependency(sink)
                await sink.prepare(
                    [
                        *(self.catalog.name(k) for k in (Catalog.REKEYED, Catalog.DEAD_LETTER)),
                        *self.router.topics,
                    ]
                )

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        await self.start_sink()
        settings = self.settings
        assert isinstance(stream, faust.Stream)  # take_events is on the class only
        async for events in stream.take_events(settings.agent_take, settings.agent_within_s):
            await self._handle(events)

    async def _handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Batch messages taken together: apply the records of each, write each
        changed customer to the table, and send the changelog records and the
        output as record batches in one go; Faust acks the batch messages only
        after everything is acknowledged."""
        applied = [self._apply(event) for event in events]
        processed = time.monotonic()
        await flush(self.table, self.sink)
        for done in applied:
            if done is not None:
                self.observe.batch(*done, processed)

    def _apply(self, event: EventT[bytes]) -> tuple[int, BatchResult] | None:
        """One batch message: apply its records and queue what they produce; the
        partition and the result, for the per-batch bookkeeping (None: unreadable)."""
        message = event.message
        sink = self.sink
        try:
            batch = envelope.decode(message.value or b"")
        except envelope.BadEnvelope as exc:
            self._reject(message, exc)
            return None
        topic, partition = batch.topic, batch.partition
        result = self.processor.process(
            [
                Record(topic, partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms)
                for r in batch.records
            ]
        )
        for out in result.outgoing:
            sink.add(out.topic, out.key, out.value, out.headers)
        self.timers.schedule_changed(message.partition, result.changed)
        if result.changed:
            # Under the batch message's partition: the customers' partition.
            states = ((key, state) for key, (state, _index) in result.changed.items())
            write_states(self.table, self.store, sink, event, states)
        return message.partition, result

    def _reject(self, message: Any, error: envelope.BadEnvelope) -> None:
        """A batch message that cannot be read goes to the dead-letter topic whole."""
        log.error(
            "unreadable touchpoint batch at %s[%s]@%s: %s",
            message.topic,
            message.partition,
            message.offset,
            error,
        )
        headers = dead_letter_headers(
            BadInput("bad_batch", str(error)),
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None,
            failed_at=self.processor.clock.now(),
        )
        self.metrics.dead_letters.labels("bad_batch").inc()
        self.metrics.events.labels("unknown", "dead_letter").inc()
        self.sink.add(self.dead_letter, message.key, message.value, headers)

    async def _partitions_moved(self, *args: Any, **kwargs: Any) -> None:
        self.store.forget_all()


class _TableStore(MutableMapping[bytes, bytes]):
    """The table's store itself: reads and writes that send no changelog record."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self._table.data[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        return self._table.data.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._table.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._table.data)

    def __len__(self) -> int:
        return len(self._table.data)
