"""Timers: derived from the state, superseded by newer events, stale ones ignored,
never fired twice; the event-time clock; both clock modes over weeks of journey time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.journey import (
    CustomerState,
    Event,
    EventTimeClock,
    PartitionClocks,
    StageMachine,
    Timer,
    TimerIgnored,
    TimerKind,
    TriggerEngine,
    TriggerFired,
    load_preset,
    with_trigger_durations,
)
from engine.journey.model import parse_model
from engine.journey.state import EPOCH, to_ms
from tests.unit.journeys import T0, at, ev
from tests.unit.triggering import PERMISSIVE, Partition, engine, fired

ENGINE = engine()


PRESETS = Path(__file__).resolve().parents[2] / "engine" / "journey" / "presets"


def state_after(*events: Event) -> CustomerState:
    state: CustomerState | None = None
    for event in events:
        state, _ = ENGINE.apply(state, event, event.timestamp)
    assert state is not None
    return state


def ms(day: int, hour: int = 0) -> int:
    return to_ms(at(day, hour))


# ---------------------------------------------------------------------------
# Derivation


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([ev("page", 0)], [], id="visitor-waits-for-nothing"),
        pytest.param(
            [ev("Signed Up", 1, 9)],
            [("trial_stalled", ms(8, 9), ms(1, 9))],
            id="evaluation-stage-entry",
        ),
        pytest.param(
            [ev("Order Completed", 0)],
            [("onboarding_stalled", ms(3), ms(0)), ("inactive", ms(14), ms(0))],
            id="acquisition-two-inactivity-clocks",
        ),
        pytest.param(
            [ev("Order Completed", 0), ev("Signed In", 2, 7), ev("page", 5)],
            [("inactive", ms(16, 7), ms(2, 7))],
            id="last-activity-not-last-event",
        ),
        pytest.param(
            [ev("Order Completed", 0), ev("Signed In", 4), ev("Signed In", 2)],
            [("inactive", ms(18), ms(4))],
            id="late-activity-does-not-move-the-clock-back",
        ),
        pytest.param(
            [ev("Order Completed", 0), ev("Subscription Cancelled", 1)],
            [("churned_30d", ms(31), ms(1))],
            id="churned-entry",
        ),
    ],
)
def test_pending_timers_follow_from_the_state(
    events: list[Event], expected: list[tuple[str, int, int]]
) -> None:
    state = state_after(*events)
    timers = ENGINE.pending_timers(state)
    assert [(t.rule, t.due_ms, t.generation) for t in timers] == expected
    assert all(t.kind is TimerKind.RULE and t.customer_id == "c1" for t in timers)
    assert ENGINE.next_timer(state) == (timers[0] if timers else None)


def test_durations_from_overrides_move_the_due_times() -> None:
    eng = TriggerEngine(
        StageMachine(with_trigger_durations(load_preset("saas"), {"trial_stalled": 86_400_000}))
    )
    state, _ = eng.apply(None, ev("Signed Up", 0), at(0))
    assert [(t.rule, t.due_ms) for t in eng.pending_timers(state)] == [("trial_stalled", ms(1))]


def test_entered_rule_with_a_wider_while_survives_progress() -> None:
    """An ``entered`` rule whose ``while`` covers later stages keeps its clock."""
    raw = json.loads((PRESETS / "saas.json").read_text("utf-8"))
    raw["triggers"] = [
        {
            "name": "review_ask",
            "type": "advocacy-ask",
            "after": {
                "entered": "10d",
                "stage": "acquisition",
                "while": ["acquisition", "onboarding", "usage"],
            },
        }
    ]
    eng = TriggerEngine(StageMachine(parse_model(raw)), PERMISSIVE)
    part = Partition(eng)
    part.run([ev("Order Completed", 0), ev("Signed In", 1), ev("Onboarding Completed", 2)])
    part.advance(at(11))
    assert fired(part.effects) == [("review_ask", "advocacy-ask", at(10), "usage")]
    # Left the while-set before the time: nothing.
    part = Partition(eng)
    part.run([ev("Order Completed", 0), ev("Payment Failed", 2)])
    part.advance(at(11))
    assert fired(part.effects) == []


# ---------------------------------------------------------------------------
# Applying fired timers: stale ones do nothing, with a reason


def _timer(rule: str, due: int, generation: int) -> Timer:
    return Timer("c1", rule, due, generation)


def _ignored(effects: Sequence[object]) -> str:
    assert len(effects) == 1
    assert isinstance(effects[0], TimerIgnored)
    return effects[0].reason


def test_a_current_timer_fires_once() -> None:
    state = state_after(ev("Signed Up", 0))
    timer = ENGINE.next_timer(state)
    assert timer == _timer("trial_stalled", ms(7), ms(0))
    fired_state, effects = ENGINE.apply_timer(state, timer, at(7))
    assert [e.rule for e in effects if isinstance(e, TriggerFired)] == ["trial_stalled"]
    assert fired_state is not None
    assert fired_state.triggers is not None
    assert fired_state.triggers.fired == (("trial_stalled", ms(7)),)
    # The same timer again (redelivered, or replayed): nothing.
    again, effects = ENGINE.apply_timer(fired_state, timer, at(8))
    assert again is fired_state
    assert _ignored(effects) == "already fired for this due time"
    # ... also after a restart that reloads the record.
    restored = CustomerState.from_dict(json.loads(json.dumps(fired_state.to_dict())))
    assert ENGINE.apply_timer(restored, timer, at(8))[1] == effects
    # And the fired timer is no longer pending.
    assert ENGINE.next_timer(fired_state) is None


@pytest.mark.parametrize(
    ("events", "timer", "now", "reason"),
    [
        pytest.param(
            [ev("Order Completed", 0), ev("Signed In", 1), ev("Feature Used", 5)],
            _timer("inactive", ms(15), ms(1)),
            at(15),
            "superseded: the rule's clock restarted at 2024-06-08T00:00:00Z "
            f"(generation {ms(5)}, timer generation {ms(1)})",
            id="superseded-by-newer-activity",
        ),
        pytest.param(
            [ev("Signed Up", 0), ev("Order Completed", 3)],
            _timer("trial_stalled", ms(7), ms(0)),
            at(7),
            "customer is in stage 'acquisition'; the rule waits in ['evaluation']",
            id="left-the-stage",
        ),
        pytest.param(
            [ev("Signed Up", 0)],
            _timer("trial_stalled", ms(7), ms(0)),
            at(6),
            "not due yet at 2024-06-09T00:00:00Z; still pending",
            id="early",
        ),
        pytest.param(
            [ev("Signed Up", 0)],
            _timer("trial_stalled", ms(8), ms(0)),
            at(8),
            "rescheduled: now due at 2024-06-10T00:00:00Z",
            id="duration-changed",
        ),
        pytest.param(
            [ev("Signed Up", 0)],
            _timer("gone_rule", ms(1), ms(0)),
            at(8),
            "model saas@1 has no time rule 'gone_rule'",
            id="unknown-rule",
        ),
        pytest.param(
            [ev("Signed Up", 0)],
            Timer("c1", "trial_stalled", ms(7), 0, TimerKind.RELEASE),
            at(8),
            "no trigger is held until then",
            id="release-with-nothing-held",
        ),
    ],
)
def test_a_stale_timer_changes_nothing_and_says_why(
    events: list[Event], timer: Timer, now: datetime, reason: str
) -> None:
    state = state_after(*events)
    after, effects = ENGINE.apply_timer(state, timer, now)
    assert after is state
    assert _ignored(effects) == reason


def test_a_timer_for_an_unknown_customer_is_ignored() -> None:
    after, effects = ENGINE.apply_timer(None, _timer("trial_stalled", ms(7), ms(0)), at(7))
    assert after is None
    assert _ignored(effects) == "no such customer in this partition's table"


def test_a_customer_who_comes_back_is_not_nudged() -> None:
    """The old timer still fires from the index (it was scheduled before the
    customer came back) but the state says it is stale; the new one is pending."""
    part = Partition()
    part.run([ev("Order Completed", 0), ev("Signed In", 1)])
    old = part.index.get(b"c1")
    assert old == _timer("inactive", ms(15), ms(1))
    part.send(ev("Feature Used", 10))
    assert part.index.get(b"c1") == _timer("inactive", ms(24), ms(10))
    # The stale timer message arrives (e.g. it was already on the timer topic).
    assert old is not None
    _, effects = part.engine.apply_timer(part.states["c1"], old, at(15))
    assert _ignored(effects).startswith("superseded")
    part.advance(at(23))
    assert part.triggers() == []


def test_the_index_holds_one_entry_and_the_partition_never_fires_twice() -> None:
    part = Partition()
    part.run([ev("Order Completed", 0), ev("Signed In", 1)])
    part.advance(at(16))
    part.advance(at(40))
    assert [t.rule for t in part.triggers()] == ["inactive"]
    assert part.ignored() == []
    assert len(part.index) == 0  # at_risk waits for nothing


def test_a_late_event_fires_the_customer_s_due_timers_first() -> None:
    """A sparse partition: the next event comes 20 days later. The customer's
    timers due before it fire before it is applied, in due order."""
    eng = ENGINE
    state, _ = eng.apply(None, ev("Order Completed", 0), at(0))
    state, effects = eng.apply(state, ev("Feature Used", 20), at(20))
    assert fired(effects) == [
        ("onboarding_stalled", "nurture", at(3), "acquisition"),
        ("inactive", "churn-risk", at(14), "at_risk"),
    ]
    # ... then the event: the at-risk customer is active again.
    assert state.stage == "usage"
    assert [h.rule for h in state.history] == ["purchased", "inactive", "reactivated"]


# ---------------------------------------------------------------------------
# Clocks


def test_event_time_clock_follows_the_newest_event_and_never_goes_back() -> None:
    clock = EventTimeClock()
    assert clock.now() == EPOCH
    assert clock.observe(at(3)) == at(3)
    assert clock.observe(at(1)) == at(3)
    assert clock.observe(at(5), ceiling=at(4)) == at(4)
    assert clock.now() == at(4)
    with pytest.raises(ValueError, match="timezone-aware"):
        EventTimeClock(at(0).replace(tzinfo=None))


def test_partition_clocks_are_independent() -> None:
    clocks = PartitionClocks(T0)
    clocks.observe(0, at(5))
    clocks.observe(1, at(2))
    assert (clocks.now(0), clocks.now(1), clocks.now(2)) == (at(5), at(2), T0)
    clocks.forget(0)
    assert clocks.now(0) == T0


def _weeks_of_traffic() -> list[Event]:
    """Eight customers over six weeks, interleaved by time."""
    events = []
    for i in range(8):
        c = f"c{i}"
        events += [ev("Signed Up", i, customer=c)]
        if i % 2:
            events += [ev("Order Completed", i + 2, customer=c)]
        if i % 4 == 1:
            events += [ev("Signed In", i + 3, customer=c), ev("Feature Used", i + 9, customer=c)]
        if i == 3:
            events += [ev("Subscription Cancelled", i + 4, customer=c)]
        if i == 5:
            events += [ev("Payment Failed", i + 6, customer=c)]
    return sorted(events, key=lambda e: e.timestamp)


def _run(traffic: list[Event], wall: bool) -> Partition:
    part = Partition(wall=T0 if wall else None)
    for event in traffic:
        if wall:
            # The wall clock ticks up to the event's arrival, 5 minutes after it happened.
            part.advance(event.timestamp + timedelta(minutes=5))
        part.send(event)
    part.advance(at(45))
    return part


def test_both_clock_modes_fire_the_same_triggers_over_six_weeks() -> None:
    traffic = _weeks_of_traffic()
    by_event_time = _run(traffic, wall=False)
    by_wall_clock = _run(traffic, wall=True)
    expected = sorted(
        (t.customer_id, t.rule, t.fired_at, t.trigger_id) for t in by_event_time.triggers()
    )
    assert expected == sorted(
        (t.customer_id, t.rule, t.fired_at, t.trigger_id) for t in by_wall_clock.triggers()
    )
    rules = sorted((c, r) for c, r, _, _ in expected)
    assert rules == [
        ("c0", "trial_stalled"),
        ("c1", "inactive"),
        ("c2", "trial_stalled"),
        ("c3", "churned_30d"),
        ("c4", "trial_stalled"),
        ("c5", "inactive"),
        ("c5", "payment_failed"),
        ("c6", "trial_stalled"),
        ("c7", "inactive"),
        ("c7", "onboarding_stalled"),
    ]
    # On the wall clock every timer fired within the one-hour tick of its due time.
    for t in by_wall_clock.decisions():
        if t.cause.timer_due is not None:
            assert timedelta(0) <= t.decided_at - t.cause.timer_due <= timedelta(hours=1)
