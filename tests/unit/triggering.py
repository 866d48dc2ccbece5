"""A partition driven by hand for trigger tests: the customers table, the timer
index and a clock, wired the way the worker wires them, without Kafka.

``Partition.send(event)`` applies an event (and reschedules the customer's next
timer); ``Partition.advance(to)`` moves the clock and applies the timers the
index hands out, as the agent would apply them from the timer topic. The clock is
the event-time clock unless ``wall`` is given: then ``now`` only moves when the
test says so (``advance``), as a wall clock ticking while events arrive.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from engine.journey import (
    CustomerState,
    DeliveryPolicy,
    Effect,
    Event,
    EventTimeClock,
    Outcome,
    PolicyDecision,
    StageChanged,
    StageMachine,
    TimerIgnored,
    TimerIndex,
    TriggerEngine,
    TriggerFired,
    load_preset,
)
from engine.journey.state import to_ms
from tests.unit.journeys import T0

PERMISSIVE = DeliveryPolicy.permissive()


def engine(model: str = "saas", policy: DeliveryPolicy = PERMISSIVE) -> TriggerEngine:
    return TriggerEngine(StageMachine(load_preset(model)), policy)


class Partition:
    def __init__(self, eng: TriggerEngine | None = None, *, wall: datetime | None = None) -> None:
        self.engine = eng or engine()
        self.index = TimerIndex()
        self.states: dict[str, CustomerState] = {}
        self.effects: list[Effect] = []
        self.event_time = EventTimeClock(T0)
        self.wall = wall

    def now(self) -> datetime:
        return self.wall if self.wall is not None else self.event_time.now()

    def send(self, event: Event) -> list[Effect]:
        """Apply one event as the agent does; then hand out the timers due by the clock."""
        self.event_time.observe(event.timestamp)
        cid = event.customer_id
        state, effects = self.engine.apply(self.states.get(cid), event, self.now())
        self._store(cid, state)
        self.effects.extend(effects)
        self.tick()
        return effects

    def run(self, events: Iterable[Event]) -> None:
        for event in events:
            self.send(event)

    def advance(self, to: datetime) -> None:
        """Let time pass (no events) up to ``to``, in one-hour ticks."""
        step = timedelta(hours=1)
        at = self.now()
        while at < to:
            at = min(at + step, to)
            if self.wall is not None:
                self.wall = at
            else:
                self.event_time.observe(at)
            self.tick()

    def tick(self) -> None:
        now = self.now()
        for key, timer in self.index.pop_due(to_ms(now)):
            cid = key.decode()
            state, effects = self.engine.apply_timer(self.states.get(cid), timer, now)
            if state is not None:
                self._store(cid, state)
            self.effects.extend(effects)

    def _store(self, cid: str, state: CustomerState) -> None:
        memory = state.triggers
        if memory is not None:  # every decision keeps its rule and outcome beside it
            assert len(memory.why) == len(memory.decided), memory
        self.states[cid] = state
        self.index.schedule(cid.encode(), self.engine.next_timer(state))

    # -- what came out

    def triggers(self) -> list[TriggerFired]:
        return [e for e in self.effects if isinstance(e, TriggerFired)]

    def decisions(self) -> list[PolicyDecision]:
        return [e for e in self.effects if isinstance(e, PolicyDecision)]

    def ignored(self) -> list[TimerIgnored]:
        return [e for e in self.effects if isinstance(e, TimerIgnored)]

    def moves(self) -> list[tuple[str | None, str, str]]:
        return [
            (e.from_stage, e.to_stage, e.rule) for e in self.effects if isinstance(e, StageChanged)
        ]


def fired(effects: Iterable[Effect]) -> list[tuple[str, str, datetime, str | None]]:
    """(rule, type, fired_at, stage) of the triggers that went out."""
    return [
        (e.rule, e.type.value, e.fired_at, e.stage) for e in effects if isinstance(e, TriggerFired)
    ]


def outcomes(effects: Iterable[Effect]) -> list[tuple[str, Outcome]]:
    """(rule, outcome) of every policy decision."""
    return [(e.rule, e.outcome) for e in effects if isinstance(e, PolicyDecision)]
