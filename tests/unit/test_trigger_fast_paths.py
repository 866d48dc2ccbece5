"""The cheaper forms the trigger path uses give what the plain ones give."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine.ingest import decode
from engine.journey import CustomerState, DeliveryPolicy, StageMachine, TriggerEngine, load_preset
from engine.journey.timers import next_due_ms, pending_timers
from engine.journey.trigger_state import TriggerMemory
from engine.simulate import encode, journeys

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def simulated(preset: str) -> tuple[TriggerEngine, list[CustomerState]]:
    engine = TriggerEngine(StageMachine(load_preset(preset)), DeliveryPolicy())
    rng = random.Random(5)
    states: dict[str, CustomerState] = {}
    for at, _, msg in journeys(300, 13, NOW):
        event = decode(encode(at, msg, rng))
        state, _ = engine.apply(states.get(event.customer_id), event, at + timedelta(hours=2))
        states[event.customer_id] = state
    return engine, list(states.values())


def test_with_triggers_copies_every_other_field() -> None:
    _, states = simulated("saas")
    memory = TriggerMemory(active_at=5, timezone="Europe/Berlin", unsubscribed=True)
    for state in states:
        copy = state.with_triggers(memory)
        assert copy == replace(state, triggers=memory)
        assert copy.triggers is memory


def test_the_next_timer_is_the_earliest_pending_one() -> None:
    for preset in ("saas", "freemium", "b2b", "aida"):
        engine, states = simulated(preset)
        for state in states:
            pending = pending_timers(engine.rules, state)
            assert engine.next_timer(state) == (pending[0] if pending else None)
            assert next_due_ms(engine.rules, state) == (pending[0].due_ms if pending else None)
