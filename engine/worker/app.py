"""The Faust app: the customers table, the input reader and the timers agent.

Faust assigns the partitions and recovers the table; the touchpoints of the owned
partitions are read by :class:`~engine.worker.input_reader.InputReader`, which hands
them here a partition at a time: :meth:`JourneyApp.apply` gives them to the
:class:`Processor` as they are and queues what it produces, :meth:`JourneyApp.send`
hands that to the producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, MutableMapping
from typing import Any, cast

import faust
from aiokafka import ConsumerRecord
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from prometheus_client import CollectorRegistry

from engine.admin import TopicMismatch
from engine.catalog import Catalog
from engine.clock import Clock, WallClock
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.api import add_api
from engine.worker.effects import EffectRouter
from engine.worker.input_reader import InputReader
from engine.worker.observe import Observer
from engine.worker.processor import BatchResult, Processor
from engine.worker.recovery import BulkRecoveryTableManager
from engine.worker.sink import Sink
from engine.worker.state_store import StateStore
from engine.worker.table_writes import send, write_states
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
        self.partitions = partitions = self.catalog[Catalog.TOUCHPOINTS].partitions
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
            # Faust's consumer reads only the timers topic and the changelog.
            stream_buffer_maxsize=256,
            broker_max_poll_records=256,
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
        # The reader writes the store directly and sends the changelog records
        # itself, in record batches (engine/worker/sink.py), instead of one Faust
        # send per table write.
        self.store = StateStore(_TableStore(self.table), settings.state_cache_size)
        self.sink = Sink(settings)
        self._sink_lock = asyncio.Lock()
        self.app.on_partitions_revoked.connect(self._revoked)
        self.app.on_partitions_assigned.connect(self._partitions_moved)
        self.owned_topic = self.catalog.name(Catalog.TIMERS)  # co-partitioned with the table
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
        self._applied: list[tuple[int, BatchResult]] = []
        self.reader = InputReader(
            settings, self.catalog, self.apply, self.send, before_start=self.start_sink
        )
        # Started with the app's services; stopped before the sinks close (Faust
        # sends on_before_shutdown before it stops its children).
        # (Faust starts an instance as it is; its annotation says classes only.)
        self.app.service(cast("type[InputReader]", self.reader))
        self.app.on_before_shutdown.connect(self._stop_reading)
        self.table.on_recover(self._recovered)
        add_metrics_page(self.app, self.registry)
        self.observe = Observer(self)
        add_api(self, self.observe)
        install_timers(self)

    async def start_sink(self) -> None:
        async with self._sink_lock:
            sink = self.sink
            if not sink._started.is_set():
                # Started here, not at app start: the reader or the timers agent may
                # need it before Faust starts extra services. The app stops it on
                # shutdown.
                await self.app.add_runtime_dependency(sink)
                await sink.prepare(
                    [
                        *(self.catalog.name(k) for k in (Catalog.REKEYED, Catalog.DEAD_LETTER)),
                        *self.router.topics,
                    ]
                )

    def apply(self, partition: int, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Touchpoints of one owned partition: apply them, write each changed
        customer to the table and queue the changelog records and the output."""
        sink = self.sink
        result = self.processor.process(records)
        for out in result.outgoing:
            sink.add(out.topic, out.key, out.value, out.headers)
        self.timers.schedule_changed(partition, result.changed)
        if result.changed:
            states = ((key, state) for key, (state, _index) in result.changed.items())
            write_states(self.table, self.store, sink, partition, states)
        self._applied.append((partition, result))

    async def send(self) -> asyncio.Future[Any]:
        """Hand what :meth:`apply` queued to the producer; the future is done once
        all of it is acknowledged and the per-batch bookkeeping is done."""
        applied, self._applied = self._applied, []
        processed = time.monotonic()
        acknowledged = await send(self.table, self.sink)
        return asyncio.ensure_future(self._observe(acknowledged, applied, processed))

    async def _observe(
        self,
        acknowledged: Awaitable[object],
        applied: list[tuple[int, BatchResult]],
        processed: float,
    ) -> None:
        await acknowledged
        for partition, result in applied:
            self.observe.batch(partition, result, processed)

    def owned_partitions(self) -> set[int]:
        """The partitions whose customers this worker owns (after the latest rebalance)."""
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.owned_topic
        }

    async def _recovered(self) -> None:
        # Faust has made the changelog by now (asking for it earlier could make the
        # broker create it on first use, with its default partition count).
        await self.start_sink()
        changelog = self.table.changelog_topic.get_topic_name()
        await self.sink.prepare([changelog])
        have = self.sink.partitions(changelog)
        if have != self.partitions:
            # Faust only logs what a recovery callback raises: stop the worker here.
            await self.app.crash(_changelog_mismatch(changelog, have, self.partitions))
            return
        await self.reader.own(self.owned_partitions())

    async def _revoked(self, *args: Any, **kwargs: Any) -> None:
        """Faust's on_partitions_revoked: stop reading them before they go."""
        revoked: set[TP] = args[1]  # (sender, revoked)
        gone = {tp.partition for tp in revoked if tp.topic == self.owned_topic}
        await self.reader.own(self.reader.owned - gone)
        self.store.forget_all()

    async def _stop_reading(self, *args: Any, **kwargs: Any) -> None:
        await self.reader.stop()

    async def _partitions_moved(self, *args: Any, **kwargs: Any) -> None:
        self.store.forget_all()


def _changelog_mismatch(topic: str, have: int, needs: int) -> TopicMismatch:
    """Table partition p is written to changelog partition p: the counts must match."""
    return TopicMismatch(
        f"topic {topic} has {have} partitions but the customers table needs {needs} "
        "(one per touchpoints partition, JOURNEY_PARTITIONS). A broker that creates "
        "topics on first use makes it with its default count when a client asks for "
        "it before the first worker; recreate it with the table's count (if it holds "
        "records, they are customers' states: re-partition them, do not drop them)."
    )


class _TableStore(MutableMapping[bytes, bytes]):
    """The table's store itself: reads and writes that send no changelog record."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self._table.data[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        store = self._table.data
        if store.__class__ is MemoryStore:
            # Its dict itself: Mapping.get goes through __getitem__ and, for a new
            # customer, a KeyError.
            return store.data.get(key, default)
        return store.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        store = self._table.data
        if store.__class__ is MemoryStore:
            store.data[key] = value
        else:
            store[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._table.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._table.data)

    def __len__(self) -> int:
        return len(self._table.data)
