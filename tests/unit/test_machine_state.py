"""The stage machine under the saas preset: visits, history, counters, dedupe, late events."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.journey import Duplicate, Event, EventType, StageChanged, StageMachine, load_preset
from engine.journey.state import Move as HistoryMove
from tests.unit.journeys import CUSTOMER, Step, at, ev, moves, replay, unzip

SAAS = load_preset("saas")
MACHINE = StageMachine(SAAS)


def test_returning_customer_visits_acquisition_twice() -> None:
    state, changes = replay(
        MACHINE,
        [ev("Order Completed", 0), ev("Subscription Cancelled", 10), ev("Order Completed", 20)],
    )
    assert [c.visit for c in changes if c] == [1, 1, 2]
    assert state.visits == {"acquisition": 2, "churned": 1}


def test_revisits_are_counted_per_stage() -> None:
    state, changes = replay(
        MACHINE,
        [
            ev("Order Completed", 0),
            ev("Payment Failed", 1),
            ev("Signed In", 2),
            ev("Payment Failed", 3),
            ev("Feature Used", 4),
            ev("NPS Submitted", 5, props={"score": 2}),
        ],
    )
    assert [(c.to_stage, c.visit) for c in changes if c] == [
        ("acquisition", 1),
        ("at_risk", 1),
        ("usage", 1),
        ("at_risk", 2),
        ("usage", 2),
        ("at_risk", 3),
    ]
    assert state.visits == {"acquisition": 1, "at_risk": 3, "usage": 2}


def test_stage_changed_describes_the_move() -> None:
    page = ev("page", 0, 8, mid="p1")
    signup = ev("Signed Up", 2, 14, mid="s1")
    state, changes = replay(MACHINE, [page, signup])
    assert changes == [
        StageChanged(
            customer_id=CUSTOMER,
            from_stage=None,
            to_stage="discovery",
            at=at(0, 8),
            model="saas",
            model_version=1,
            rule="first_visit",
            message_id="p1",
            event="page",
            visit=1,
            time_in_previous_s=None,
            late=False,
        ),
        StageChanged(
            customer_id=CUSTOMER,
            from_stage="discovery",
            to_stage="evaluation",
            at=at(2, 14),
            model="saas",
            model_version=1,
            rule="signed_up",
            message_id="s1",
            event="Signed Up",
            visit=1,
            time_in_previous_s=2 * 86400 + 6 * 3600,
            late=False,
        ),
    ]
    assert state.stage == "evaluation"
    assert state.stage_entered_at == at(2, 14)
    assert state.time_in_stage_s(at(3, 14)) == 86400


@pytest.mark.parametrize(
    ("first", "second", "seconds"),
    [
        (at(0), at(0, 0, 0, 1), 1),
        (at(0, 9), at(0, 21, 30), 12.5 * 3600),
        (at(0), at(31), 31 * 86400),
    ],
)
def test_time_in_previous_is_the_event_time_difference(
    first: datetime, second: datetime, seconds: float
) -> None:
    events = [
        Event("a", CUSTOMER, EventType.TRACK, first, name="Signed Up"),
        Event("b", CUSTOMER, EventType.TRACK, second, name="Order Completed"),
    ]
    _, changes = replay(MACHINE, events)
    assert changes[1] is not None
    assert changes[1].time_in_previous_s == seconds


def test_history_records_moves_and_is_bounded() -> None:
    events = [
        ev("Order Completed", 0, mid="o"),
        ev("Payment Failed", 1, mid="f1"),
        ev("Signed In", 2, mid="i1"),
        ev("Payment Failed", 3, mid="f2"),
        ev("Signed In", 4, mid="i2"),
    ]
    full, _ = replay(MACHINE, events)
    assert full.history == (
        HistoryMove(None, "acquisition", at(0), "purchased", "o"),
        HistoryMove("acquisition", "at_risk", at(1), "payment_failed", "f1"),
        HistoryMove("at_risk", "usage", at(2), "reactivated", "i1"),
        HistoryMove("usage", "at_risk", at(3), "payment_failed", "f2"),
        HistoryMove("at_risk", "usage", at(4), "reactivated", "i2"),
    )
    bounded, _ = replay(StageMachine(SAAS, history_limit=2), events)
    assert bounded.history == full.history[-2:]
    # visits are not bounded by the history limit
    assert bounded.visits == full.visits == {"acquisition": 1, "at_risk": 2, "usage": 2}


@pytest.mark.parametrize("limits", [{"history_limit": 0}, {"dedupe_max_ids": 0}])
def test_limits_below_one_are_refused(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        StageMachine(SAAS, **limits)


def test_touches_counted_per_channel_and_events_counted() -> None:
    state, _ = replay(
        MACHINE,
        [
            ev("page", 0, channel="browser"),
            ev("screen", 1, channel="mobile"),
            ev("page", 2, channel="browser"),
            ev("Order Completed", 3, channel="server"),
            ev("Feature Used", 4, channel="mobile"),
            ev("Email Opened", 5, channel="email"),
        ],
    )
    assert state.touches == {"browser": 2, "mobile": 2, "server": 1, "email": 1}
    assert state.events == 6
    assert state.late_events == 0


def test_first_and_last_seen_follow_event_time() -> None:
    state, _ = replay(MACHINE, [ev("page", 3, 10), ev("page", 1, 5), ev("page", 7), ev("page", 2)])
    assert state.first_seen == at(1, 5)
    assert state.last_seen == at(7)
    assert state.late_events == 2


def test_unknown_event_creates_a_customer_without_a_stage() -> None:
    state, effects = MACHINE.apply(None, ev("Signed In", 0, mid="x"), at(0))
    assert effects == []
    assert (state.customer_id, state.stage, state.events) == (CUSTOMER, None, 1)
    assert (state.model, state.model_version) == ("saas", 1)


# ---------------------------------------------------------------------------
# Dedupe


def test_duplicate_within_window_returns_same_state_and_duplicate_effect() -> None:
    first = ev("Order Completed", 0, mid="dup-1")
    state, effects = MACHINE.apply(None, first, at(0))
    assert [type(e) for e in effects] == [StageChanged]
    # the same messageId again, even with another body, is dropped
    again = ev("Payment Failed", 0, 1, mid="dup-1")
    for now in (at(0, 0, 0, 1), at(0, 23, 59), at(1)):  # up to and including the window edge
        same, effects = MACHINE.apply(state, again, now)
        assert same is state
        assert effects == [Duplicate(customer_id=CUSTOMER, message_id="dup-1")]


def test_duplicate_after_window_is_applied_again() -> None:
    state, _ = MACHINE.apply(None, ev("Order Completed", 0, mid="o-1"), at(0))
    state, _ = MACHINE.apply(state, ev("Payment Failed", 0, 2, mid="pf-1"), at(0, 2))
    assert state.stage == "at_risk"
    now = at(1) + timedelta(milliseconds=1)  # just past 24 h after o-1 was seen
    again, effects = MACHINE.apply(state, ev("Order Completed", 0, mid="o-1"), now)
    assert not any(isinstance(e, Duplicate) for e in effects)
    assert again.events == 3
    # pf-1 was seen 2 h later, so it is still remembered
    same, effects = MACHINE.apply(again, ev("Payment Failed", 0, 2, mid="pf-1"), now)
    assert same is again
    assert effects == [Duplicate(CUSTOMER, "pf-1")]


def test_dedupe_window_is_configurable() -> None:
    machine = StageMachine(SAAS, dedupe_window=timedelta(minutes=5))
    state, _ = machine.apply(None, ev("page", 0, mid="p"), at(0))
    _, effects = machine.apply(state, ev("page", 0, mid="p"), at(0, 0, 5))
    assert effects == [Duplicate(CUSTOMER, "p")]
    applied, effects = machine.apply(state, ev("page", 0, mid="p"), at(0, 0, 5, 1))
    assert effects == []
    assert applied.events == 2


def test_dedupe_keeps_at_most_max_ids() -> None:
    machine = StageMachine(SAAS, dedupe_max_ids=2)
    state, _ = replay(
        machine, [ev("page", 0, mid="a"), ev("page", 0, 1, mid="b"), ev("page", 0, 2, mid="c")]
    )
    assert len(state.recent_ids) == 2
    _, effects = machine.apply(state, ev("page", 0, 2, mid="c"), at(0, 3))
    assert effects == [Duplicate(CUSTOMER, "c")]
    _, effects = machine.apply(state, ev("page", 0, 1, mid="b"), at(0, 3))
    assert effects == [Duplicate(CUSTOMER, "b")]
    forgotten, effects = machine.apply(state, ev("page", 0, mid="a"), at(0, 3))
    assert effects == []
    assert forgotten.events == 4


def test_default_machine_remembers_32_ids() -> None:
    state, _ = replay(MACHINE, [ev("page", 0, minute=i, mid=f"id-{i}") for i in range(40)])
    assert len(state.recent_ids) == 32
    _, effects = MACHINE.apply(state, ev("page", 0, mid="id-8"), at(0, 1))
    assert effects == [Duplicate(CUSTOMER, "id-8")]
    _, effects = MACHINE.apply(state, ev("page", 0, mid="id-7"), at(0, 1))
    assert effects == []


# ---------------------------------------------------------------------------
# Late events (older than the newest event applied)


def test_late_event_updates_counters_but_does_not_move_back() -> None:
    state, changes = replay(
        MACHINE,
        [
            ev("Order Completed", 0),
            ev("Subscription Renewed", 30, channel="server"),
            ev("Payment Failed", 20, channel="server"),
        ],
    )
    assert moves(changes) == [("acquisition", "purchased"), ("retention", "renewed"), None]
    assert state.stage == "retention"
    assert state.stage_entered_at == at(30)
    assert state.events == 3
    assert state.late_events == 1
    assert state.touches == {"browser": 1, "server": 2}
    assert state.last_seen == at(30)


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            [
                (ev("Order Completed", 0), ("acquisition", "purchased")),
                (ev("Subscription Renewed", 30), ("retention", "renewed")),
                (ev("Payment Failed", 20), None),
            ],
            id="payment-failed-before-renewal",
        ),
        pytest.param(
            [
                (ev("Order Completed", 0), ("acquisition", "purchased")),
                (ev("Onboarding Completed", 10), ("usage", "onboarding_completed")),
                (ev("NPS Submitted", 5, props={"score": 2}), None),
            ],
            id="detractor-before-usage",
        ),
        pytest.param(
            [
                (ev("Order Completed", 0), ("acquisition", "purchased")),
                (ev("Subscription Renewed", 30), ("retention", "renewed")),
                (ev("Subscription Cancelled", 29), None),
            ],
            id="cancellation-older-than-renewal",
        ),
        pytest.param(
            [
                (ev("Order Completed", 0), ("acquisition", "purchased")),
                (ev("Subscription Cancelled", 30), ("churned", "cancelled")),
                (ev("Trial Started", 20), None),
            ],
            id="churned-not-reopened-by-older-trial",
        ),
        pytest.param(
            [
                (ev("Order Completed", 0), ("acquisition", "purchased")),
                (ev("Payment Failed", 10), ("at_risk", "payment_failed")),
                (ev("Feature Used", 9), None),
            ],
            id="at-risk-not-reactivated-by-older-activity",
        ),
    ],
)
def test_late_event_does_not_move_off_the_main_path_or_back(steps: list[Step]) -> None:
    events, expected = unzip(steps)
    state, changes = replay(MACHINE, events)
    assert moves(changes) == expected
    assert state.late_events == 1


def test_late_event_moving_forward_on_the_main_path_moves() -> None:
    state, changes = replay(
        MACHINE,
        [ev("page", 0), ev("Signed Up", 5, mid="su"), ev("Order Completed", 3, mid="oc")],
    )
    assert moves(changes) == [
        ("discovery", "first_visit"),
        ("evaluation", "signed_up"),
        ("acquisition", "purchased"),
    ]
    change = changes[2]
    assert change is not None
    assert change.late is True
    assert (change.from_stage, change.at, change.message_id) == ("evaluation", at(3), "oc")
    assert [c.late for c in changes if c] == [False, False, True]
    assert state.stage == "acquisition"
    assert state.late_events == 1
    assert state.last_seen == at(5)


def test_event_at_the_same_instant_is_not_late() -> None:
    state, changes = replay(
        MACHINE,
        [ev("Order Completed", 0), ev("Subscription Renewed", 30), ev("Payment Failed", 30)],
    )
    assert moves(changes)[-1] == ("at_risk", "payment_failed")
    assert changes[-1] is not None
    assert changes[-1].late is False
    assert state.late_events == 0
