"""``timer_view``: the parts of a stored record timers follow from give the same timers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from engine.ingest import decode
from engine.journey import (
    CustomerState,
    DeliveryPolicy,
    StageMachine,
    StateError,
    TriggerEngine,
    load_preset,
)
from engine.journey.timers import history_stages, timer_view
from engine.simulate import encode, journeys

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("preset", ["saas", "freemium", "b2b", "aida"])
def test_the_view_of_a_record_has_the_timers_of_the_whole_record(preset: str) -> None:
    engine = TriggerEngine(StageMachine(load_preset(preset)), DeliveryPolicy())
    rng = random.Random(3)
    states: dict[str, CustomerState] = {}
    for at, _, msg in journeys(400, 11, NOW):
        event = decode(encode(at, msg, rng))
        # The processing clock a few hours behind the events: quiet hours hold some.
        state, _ = engine.apply(states.get(event.customer_id), event, at + timedelta(hours=3))
        states[event.customer_id] = state
    rules, timed = engine.rules, 0
    for state in states.values():
        raw = orjson.loads(orjson.dumps(state.to_dict()))
        view = timer_view(raw, rules)
        assert engine.next_timer(view) == engine.next_timer(state)
        assert (view.customer_id, view.stage, view.last_seen) == (
            state.customer_id,
            state.stage,
            state.last_seen,
        )
        timed += engine.next_timer(state) is not None
    assert timed > 100  # most customers wait for some timer


def test_history_is_read_only_where_a_clock_may_start_before_the_stage() -> None:
    rules = load_preset("saas").triggers
    assert history_stages(rules) == {"acquisition", "onboarding", "usage", "retention", "advocacy"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"v": 99}, "unsupported state record version 99"),
        ([1, 2], "unsupported state record version 'list'"),
        ({"v": 1, "id": "x"}, "malformed customer state record"),
        (
            {"v": 1, "id": "x", "m": "saas", "mv": 1, "s": "usage", "se": "soon", "ls": None,
             "h": []},
            "malformed customer state record",
        ),
    ],
)  # fmt: skip
def test_an_unreadable_record_is_a_state_error(raw: object, words: str) -> None:
    with pytest.raises(StateError, match=words):
        timer_view(raw, load_preset("saas").triggers)  # type: ignore[arg-type]
