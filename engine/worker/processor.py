"""What the journey agent does with a batch of records: decode, apply, collect.

The processor does no I/O. For a batch it returns the records to send (stage
changes, dead letters, re-keyed input) in input order, and the final state of
each customer the batch changed, so the agent writes each changed customer to the
table once per batch and sends everything without waiting message by message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from engine.catalog import Catalog
from engine.clock import Clock
from engine.ingest import BadInput, decode
from engine.journey import (
    CustomerState,
    Duplicate,
    PartitionClocks,
    PolicyDecision,
    StageChanged,
    StageMachine,
    TriggerEngine,
)
from engine.journey.slotted import constructor
from engine.messages import dead_letter_headers, iso, stage_change_value
from engine.metrics import Metrics
from engine.worker.sink import Headers

if TYPE_CHECKING:
    from engine.worker.effects import EffectRouter


class StateSource(Protocol):
    def get(self, key: bytes) -> CustomerState | None: ...


class InputRecord(Protocol):
    """The parts of a Kafka record the processor reads (an aiokafka ConsumerRecord
    has them, so the input reader hands those over as they are)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def timestamp(self) -> int | None: ...  # ms


@dataclass(frozen=True, slots=True)
class Record:
    """An :class:`InputRecord` built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int | None = None  # ms


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None


_outgoing = constructor(Outgoing)  # Outgoing(...), cheaper per stage change


@dataclass(slots=True)
class BatchResult:
    """``changed`` maps a customer key to its new state and the index of the last
    record of the batch that changed it (the table write belongs to that record's
    partition); ``changes`` are the batch's stage changes in input order;
    ``decisions`` the newest policy decision per customer key."""

    outgoing: list[Outgoing] = field(default_factory=list)
    changed: dict[bytes, tuple[CustomerState, int]] = field(default_factory=dict)
    changes: list[StageChanged] = field(default_factory=list)
    decisions: dict[bytes, PolicyDecision] = field(default_factory=dict)


class Processor:
    def __init__(
        self,
        machine: StageMachine | TriggerEngine,
        states: StateSource,
        catalog: Catalog,
        clock: Clock,
        metrics: Metrics,
        max_message_bytes: int,
        effects: EffectRouter | None = None,
        event_time: PartitionClocks | None = None,
    ) -> None:
        """``effects``: where trigger effects go. ``event_time``: the partition
        clocks of the event-time mode (``now`` is the partition's newest event
        time); None: ``clock``."""
        self.machine = machine
        self.effects = effects
        self.event_time = event_time
        self.states = states
        self.clock = clock
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.rekeyed = catalog.name(Catalog.REKEYED)
        self.stage_changes = catalog.name(Catalog.STAGE_CHANGES)
        self.dead_letter = catalog.name(Catalog.DEAD_LETTER)

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        result = BatchResult()
        outgoing, changed, changes = result.outgoing, result.changed, result.changes
        # Keyed by the call type itself: a str enum, equal to its value.
        counts: Counter[tuple[str, str]] = Counter()
        transitions: Counter[tuple[str, str, str]] = Counter()
        dead: Counter[str] = Counter()
        now = self.clock.now()
        processed_at = iso(now)
        apply, states, limit = self.machine.apply, self.states, self.max_message_bytes
        rekeyed, stage_changes = self.rekeyed, self.stage_changes
        router, event_time = self.effects, self.event_time
        for index, record in enumerate(records):
            try:
                event = decode(record.value, record.headers, max_bytes=limit)
            except BadInput as exc:
                outgoing.append(self._dead_letter(record, exc, now))
                dead[exc.reason] += 1
                counts["unknown", "dead_letter"] += 1
                continue
            key = event.customer_id.encode()
            if record.topic != rekeyed and record.key != key:
                # Keyed by something else: re-publish keyed by customer so that the
                # partition owning this customer's state applies it.
                outgoing.append(Outgoing(rekeyed, key, record.value, record.headers))
                counts[event.type, "rekeyed"] += 1
                continue
            if event_time is not None:
                now = event_time.observe(record.partition, event.timestamp)
                processed_at = iso(now)
            pending = changed.get(key)
            state = pending[0] if pending is not None else states.get(key)
            new_state, effects = apply(state, event, now)
            if new_state is not state:
                changed[key] = (new_state, index)
            outcome = "applied"
            for effect in effects:
                if isinstance(effect, StageChanged):
                    changes.append(effect)
                    outgoing.append(
                        _outgoing(stage_changes, key, stage_change_value(effect, processed_at))
                    )
                    transitions[effect.model, effect.from_stage or "none", effect.to_stage] += 1
                elif isinstance(effect, Duplicate):
                    outcome = "duplicate"
                elif router is not None:
                    router.route(key, effect, now, outgoing)
            counts[event.type, outcome] += 1
        self._count(counts, transitions, dead)
        if router is not None:
            result.decisions = router.take_decisions()
        return result

    def _count(
        self,
        counts: Counter[tuple[str, str]],
        transitions: Counter[tuple[str, str, str]],
        dead: Counter[str],
    ) -> None:
        metrics = self.metrics
        for labels, n in counts.items():
            metrics.events.labels(*labels).inc(n)
        for moved, n in transitions.items():
            metrics.transitions.labels(*moved).inc(n)
        for reason, n in dead.items():
            metrics.dead_letters.labels(reason).inc(n)

    def _dead_letter(self, record: InputRecord, error: BadInput, now: datetime) -> Outgoing:
        headers = dead_letter_headers(
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            failed_at=now,
        )
        return Outgoing(self.dead_letter, record.key, record.value, [*record.headers, *headers])
