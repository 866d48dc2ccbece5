"""What the journey agent does with one record: decode, apply, store, emit.

The agent stays thin; this class holds the steps and takes its table, sinks and
clock as arguments so it can run against Faust or against plain objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import Protocol

from engine.catalog import Catalog
from engine.clock import Clock
from engine.ingest import BadInput, decode
from engine.journey import CustomerState, Duplicate, StageChanged, StageMachine
from engine.messages import dead_letter_headers, dumps, stage_change
from engine.metrics import Metrics

Headers = list[tuple[str, bytes]]


class Send(Protocol):
    def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a Kafka record the processor reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None = None


class Processor:
    def __init__(
        self,
        machine: StageMachine,
        table: MutableMapping[bytes, CustomerState],
        send: Send,
        catalog: Catalog,
        clock: Clock,
        metrics: Metrics,
        max_message_bytes: int,
    ) -> None:
        self.machine = machine
        self.table = table
        self.send = send
        self.clock = clock
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.touchpoints = catalog.name(Catalog.TOUCHPOINTS)
        self.rekeyed = catalog.name(Catalog.REKEYED)
        self.stage_changes = catalog.name(Catalog.STAGE_CHANGES)
        self.dead_letter = catalog.name(Catalog.DEAD_LETTER)

    async def handle(self, record: Record) -> None:
        try:
            event = decode(record.value, record.headers, max_bytes=self.max_message_bytes)
        except BadInput as exc:
            await self._dead_letter(record, exc)
            return
        key = event.customer_id.encode("utf-8")
        if record.topic != self.rekeyed and record.key != key:
            # Keyed by something else: re-publish keyed by customer so that the
            # partition owning this customer's state applies it.
            await self.send(self.rekeyed, key, record.value, record.headers)
            self._count(event.type.value, "rekeyed")
            return
        now = self.clock.now()
        state = self.table.get(key)
        new_state, effects = self.machine.apply(state, event, now)
        if new_state is not state:
            self.table[key] = new_state
        outcome = "applied"
        for effect in effects:
            if isinstance(effect, StageChanged):
                await self.send(self.stage_changes, key, dumps(stage_change(effect, now)), None)
                self.metrics.transitions.labels(
                    effect.model, effect.from_stage or "none", effect.to_stage
                ).inc()
            elif isinstance(effect, Duplicate):
                outcome = "duplicate"
        self._count(event.type.value, outcome)

    def _count(self, event_type: str, outcome: str) -> None:
        self.metrics.events.labels(event_type, outcome).inc()

    async def _dead_letter(self, record: Record, error: BadInput) -> None:
        headers = dead_letter_headers(
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            failed_at=self.clock.now(),
        )
        await self.send(self.dead_letter, record.key, record.value, [*record.headers, *headers])
        self.metrics.dead_letters.labels(error.reason).inc()
        self._count("unknown", "dead_letter")
