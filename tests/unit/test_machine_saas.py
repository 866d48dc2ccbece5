"""The stage machine under the saas preset: every rule, counters, dedupe, late events, state."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from engine.journey import (
    CustomerState,
    Duplicate,
    Event,
    EventType,
    StageChanged,
    StageMachine,
    StateError,
    load_preset,
)
from engine.journey.state import Move as HistoryMove
from tests.unit.journeys import (
    CUSTOMER,
    Move,
    Step,
    at,
    ev,
    final_stage,
    moves,
    replay,
    unzip,
)

SAAS = load_preset("saas")
MACHINE = StageMachine(SAAS)

PAYING = ("acquisition", "onboarding", "usage", "retention", "advocacy")
ACTIVITY = ("Signed In", "Feature Used", "Invite Sent", "Account Added User")


def reach(stage: str) -> tuple[list[Event], list[Move]]:
    """Events on day 0 that bring a new customer to ``stage``, and the moves they make."""
    if stage == "new":
        return [], []
    if stage == "discovery":
        return [ev("page", 0)], [("discovery", "first_visit")]
    if stage == "evaluation":
        return [ev("Signed Up", 0)], [("evaluation", "signed_up")]
    bought: list[Event] = [ev("Order Completed", 0)]
    bought_move: list[Move] = [("acquisition", "purchased")]
    second: dict[str, tuple[str, Move]] = {
        "onboarding": ("Signed In", ("onboarding", "first_activity")),
        "usage": ("Onboarding Completed", ("usage", "onboarding_completed")),
        "retention": ("Subscription Renewed", ("retention", "renewed")),
        "advocacy": ("Referral Sent", ("advocacy", "referral")),
        "at_risk": ("Payment Failed", ("at_risk", "payment_failed")),
        "churned": ("Subscription Cancelled", ("churned", "cancelled")),
    }
    if stage == "acquisition":
        return bought, bought_move
    name, move = second[stage]
    return [*bought, ev(name, 0, 1)], [*bought_move, move]


def step(stage: str, name: str, expected: Move, props: dict[str, Any] | None = None) -> Any:
    """One table row: from ``stage``, the event ``name`` (day 1) makes move ``expected``."""
    suffix = "" if not props else "-" + ",".join(f"{k}={v}" for k, v in props.items())
    return pytest.param(stage, name, props, expected, id=f"{stage}-{name}{suffix}")


STEPS = [
    # page and screen -> discovery, only for a new customer
    step("new", "page", ("discovery", "first_visit")),
    step("new", "screen", ("discovery", "first_visit")),
    step("discovery", "page", None),
    step("evaluation", "page", None),
    step("evaluation", "screen", None),
    step("acquisition", "page", None),
    step("churned", "page", None),
    # discovery touches, only before sign-up
    step("new", "Products Searched", ("discovery", "discovery_touch")),
    step("new", "Product Viewed", ("discovery", "discovery_touch")),
    step("new", "Email Opened", ("discovery", "discovery_touch")),
    step("new", "Email Link Clicked", ("discovery", "discovery_touch")),
    step("discovery", "Product Viewed", None),
    step("evaluation", "Product Viewed", None),
    step("evaluation", "Email Opened", None),
    # evaluation, from new (skipping discovery) and from discovery
    *[
        step(s, n, ("evaluation", "signed_up"))
        for s in ("new", "discovery")
        for n in ("Signed Up", "Account Created", "Trial Started", "Demo Requested")
    ],
    step("acquisition", "Trial Started", None),
    step("at_risk", "Signed Up", None),
    # acquisition: straight from new, and from discovery, evaluation, churned
    *[
        step(s, n, ("acquisition", "purchased"))
        for s in ("new", "discovery", "evaluation", "churned")
        for n in ("Order Completed", "Subscription Started")
    ],
    *[step(s, "Order Completed", None) for s in ("onboarding", "usage", "at_risk")],
    # onboarding on the first product activity after the purchase
    *[step("acquisition", n, ("onboarding", "first_activity")) for n in ACTIVITY],
    *[step(s, "Signed In", None) for s in ("new", "discovery", "evaluation", "churned")],
    step("usage", "Feature Used", None),
    # Onboarding Completed -> usage
    step("acquisition", "Onboarding Completed", ("usage", "onboarding_completed")),
    step("onboarding", "Onboarding Completed", ("usage", "onboarding_completed")),
    step("evaluation", "Onboarding Completed", None),
    step("retention", "Onboarding Completed", None),
    # Subscription Renewed -> retention
    *[
        step(s, "Subscription Renewed", ("retention", "renewed"))
        for s in ("acquisition", "onboarding", "usage", "at_risk")
    ],
    step("evaluation", "Subscription Renewed", None),
    step("advocacy", "Subscription Renewed", None),
    step("churned", "Subscription Renewed", None),
    # advocacy: referral, review, NPS 9-10; NPS 7-8 changes nothing
    *[
        step(s, n, ("advocacy", "referral"))
        for s in ("acquisition", "onboarding", "usage", "retention")
        for n in ("Referral Sent", "Review Submitted")
    ],
    *[
        step(s, "NPS Submitted", ("advocacy", "promoter"), {"score": score})
        for s in ("acquisition", "onboarding", "usage", "retention")
        for score in (9, 10)
    ],
    *[
        step(s, "NPS Submitted", None, {"score": score})
        for s in ("acquisition", "usage", "retention", "advocacy")
        for score in (7, 8)
    ],
    step("usage", "NPS Submitted", ("advocacy", "promoter"), {"score": "9"}),
    step("usage", "NPS Submitted", None, {"comment": "no score"}),
    step("evaluation", "Referral Sent", None),
    step("evaluation", "NPS Submitted", None, {"score": 10}),
    step("at_risk", "Referral Sent", None),
    # at_risk: payment failed or NPS <= 6 from each paying stage, never before paying
    *[step(s, "Payment Failed", ("at_risk", "payment_failed")) for s in PAYING],
    *[
        step(s, "NPS Submitted", ("at_risk", "detractor"), {"score": score})
        for s in PAYING
        for score in (0, 6)
    ],
    *[step(s, "Payment Failed", None) for s in ("new", "discovery", "evaluation", "churned")],
    *[
        step(s, "NPS Submitted", None, {"score": 3})
        for s in ("new", "discovery", "evaluation", "churned")
    ],
    # cancellation -> churned, from a trial or any paying stage
    *[
        step(s, "Subscription Cancelled", ("churned", "cancelled"))
        for s in ("evaluation", *PAYING, "at_risk")
    ],
    step("new", "Subscription Cancelled", None),
    step("discovery", "Subscription Cancelled", None),
    # at_risk -> usage on product activity
    *[step("at_risk", n, ("usage", "reactivated")) for n in ACTIVITY],
    # churned -> evaluation on a new trial, sign-up or demo request
    *[
        step("churned", n, ("evaluation", "new_trial"))
        for n in ("Trial Started", "Demo Requested", "Signed Up")
    ],
    step("churned", "Account Created", None),
    # calls and events no rule knows
    step("new", "identify", None),
    step("new", "group", None),
    step("usage", "Button Clicked", None),
]


@pytest.mark.parametrize(("stage", "name", "props", "expected"), STEPS)
def test_rule_table(stage: str, name: str, props: dict[str, Any] | None, expected: Move) -> None:
    prefix, prefix_moves = reach(stage)
    state, changes = replay(MACHINE, [*prefix, ev(name, 1, props=props)])
    assert moves(changes) == [*prefix_moves, expected]
    assert state.stage == final_stage([*prefix_moves, expected])


# Multi-step journeys: event sequence with explicit times -> the move each event makes.
JOURNEYS = [
    pytest.param(
        [
            (ev("Order Completed", 0), ("acquisition", "purchased")),
            (ev("Signed In", 1, 9), ("onboarding", "first_activity")),
            (ev("Feature Used", 2, 9), None),
            (ev("Feature Used", 3, 9), ("usage", "habit_formed")),
        ],
        id="usage-on-third-distinct-day",
    ),
    pytest.param(
        [
            (ev("Order Completed", 0), ("acquisition", "purchased")),
            (ev("Signed In", 1, 9), ("onboarding", "first_activity")),
            (ev("Feature Used", 1, 12), None),
            (ev("Invite Sent", 1, 23), None),
        ],
        id="no-usage-after-three-events-on-one-day",
    ),
    pytest.param(
        [
            (ev("Order Completed", 0), ("acquisition", "purchased")),
            (ev("Signed In", 1, 9), ("onboarding", "first_activity")),
            (ev("Feature Used", 2, 9), None),
            (ev("Feature Used", 2, 18), None),
            (ev("Signed In", 2, 23), None),
        ],
        id="no-usage-after-two-days",
    ),
    pytest.param(
        # 23:59 and 00:01 are different UTC days
        [
            (ev("Order Completed", 0), ("acquisition", "purchased")),
            (ev("Signed In", 1, 23, minute=59), ("onboarding", "first_activity")),
            (ev("Feature Used", 2, 0, minute=1), None),
            (ev("Feature Used", 3, 0, minute=1), ("usage", "habit_formed")),
        ],
        id="utc-midnight-separates-days",
    ),
    pytest.param(
        # non-activity events do not count as active days
        [
            (ev("Order Completed", 0), ("acquisition", "purchased")),
            (ev("Signed In", 1), ("onboarding", "first_activity")),
            (ev("page", 2), None),
            (ev("Payment Succeeded", 3), None),
            (ev("Feature Used", 4), None),
            (ev("Feature Used", 5), ("usage", "habit_formed")),
        ],
        id="only-activity-counts",
    ),
    pytest.param(
        # activity before the purchase does not count toward onboarding's 3 days
        [
            (ev("Signed Up", 0), ("evaluation", "signed_up")),
            (ev("Signed In", 1), None),
            (ev("Signed In", 2), None),
            (ev("Order Completed", 3), ("acquisition", "purchased")),
            (ev("Signed In", 3, 6), ("onboarding", "first_activity")),
            (ev("Signed In", 4), None),
        ],
        id="days-count-from-stage-entry",
    ),
    pytest.param(
        [
            (ev("page", 0), ("discovery", "first_visit")),
            (ev("Product Viewed", 0, 1), None),
            (ev("Trial Started", 1), ("evaluation", "signed_up")),
            (ev("Signed In", 1, 2), None),
            (ev("Subscription Started", 5), ("acquisition", "purchased")),
            (ev("Feature Used", 5, 1), ("onboarding", "first_activity")),
            (ev("Onboarding Completed", 6), ("usage", "onboarding_completed")),
            (ev("Subscription Renewed", 35), ("retention", "renewed")),
            (ev("NPS Submitted", 40, props={"score": 10}), ("advocacy", "promoter")),
            (ev("Payment Failed", 65), ("at_risk", "payment_failed")),
            (ev("Feature Used", 66), ("usage", "reactivated")),
            (ev("Subscription Cancelled", 90), ("churned", "cancelled")),
            (ev("Demo Requested", 120), ("evaluation", "new_trial")),
            (ev("Order Completed", 121), ("acquisition", "purchased")),
        ],
        id="full-lifecycle-and-return",
    ),
    pytest.param(
        [
            (ev("Subscription Started", 0), ("acquisition", "purchased")),
            (ev("Subscription Cancelled", 30), ("churned", "cancelled")),
            (ev("Subscription Started", 60), ("acquisition", "purchased")),
        ],
        id="churned-buys-again",
    ),
]


@pytest.mark.parametrize("steps", JOURNEYS)
def test_journey(steps: list[Step]) -> None:
    events, expected = unzip(steps)
    _, changes = replay(MACHINE, events)
    assert moves(changes) == expected


def test_every_saas_rule_is_exercised_by_the_tables() -> None:
    covered = {cast(Move, p.values[-1]) for p in STEPS}
    covered |= {m for p in JOURNEYS for _, m in cast(list[Step], p.values[0])}
    assert {r.name for r in SAAS.rules} == {m[1] for m in covered if m}


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


# ---------------------------------------------------------------------------
# The stored record


def rich_state() -> CustomerState:
    state, _ = replay(
        MACHINE,
        [
            ev("page", 0, channel="browser"),
            ev("Trial Started", 1),
            ev("Order Completed", 3, 12),
            ev("Signed In", 3, 13, channel="mobile"),
            ev("Feature Used", 4, channel="mobile"),
            ev("Payment Failed", 2, channel="server"),
        ],  # one late event
    )
    assert len(state.history) == 4
    assert len(state.recent_ids) == 4  # ids seen more than 24 h before the last are gone
    assert state.late_events == 1
    assert state.active_days_in_stage == 2
    return state


def test_state_round_trips_through_a_dict() -> None:
    state = rich_state()
    assert CustomerState.from_dict(state.to_dict()) == state
    assert CustomerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    fresh = MACHINE.new_state("c2")
    assert CustomerState.from_dict(fresh.to_dict()) == fresh


def test_restored_state_keeps_deduping_and_counting() -> None:
    state = rich_state()
    restored = CustomerState.from_dict(json.loads(json.dumps(state.to_dict())))
    last_id = "again"
    a, _ = MACHINE.apply(state, ev("Feature Used", 5, mid=last_id), at(5))
    b, _ = MACHINE.apply(restored, ev("Feature Used", 5, mid=last_id), at(5))
    assert a == b
    assert b.stage == "usage"  # third active day in onboarding
    _, effects = MACHINE.apply(b, ev("Feature Used", 5, mid=last_id), at(5, 1))
    assert effects == [Duplicate(CUSTOMER, last_id)]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2004, 3, 15, 7, 55, 47, 472000, tzinfo=UTC),
        datetime(2039, 1, 1, 0, 33, 19, 982000, tzinfo=UTC),
    ],
    ids=["2004", "2039"],
)
def test_millisecond_times_round_trip(when: datetime) -> None:
    event = Event("m", CUSTOMER, EventType.PAGE, when)
    state, _ = MACHINE.apply(None, event, when)
    restored = CustomerState.from_dict(state.to_dict())
    assert restored.last_seen == when
    assert restored == state


# A stored record written out by hand: the on-disk format must not drift silently.
RECORD: dict[str, Any] = {
    "v": 1,
    "id": "c1",
    "m": "saas",
    "mv": 1,
    "s": "evaluation",
    "se": 1717462800000,  # 2024-06-04T01:00Z
    "h": [
        [None, "discovery", 1717372800000, "first_visit", "m-a"],
        ["discovery", "evaluation", 1717462800000, "signed_up", "m-b"],
    ],
    "vi": {"discovery": 1, "evaluation": 1},
    "fs": 1717372800000,  # 2024-06-03T00:00Z
    "ls": 1717462800000,
    "t": {"browser": 2},
    "n": 2,
    "ln": 0,
    "ad": 0,
    "la": 0,
    "r": [[123, 1717462800000]],
}


def test_a_stored_record_loads_and_writes_back_unchanged() -> None:
    state = CustomerState.from_dict(RECORD)
    assert state == CustomerState(
        customer_id="c1",
        model="saas",
        model_version=1,
        stage="evaluation",
        stage_entered_at=at(1, 1),
        history=(
            HistoryMove(None, "discovery", at(0), "first_visit", "m-a"),
            HistoryMove("discovery", "evaluation", at(1, 1), "signed_up", "m-b"),
        ),
        visits={"discovery": 1, "evaluation": 1},
        first_seen=at(0),
        last_seen=at(1, 1),
        touches={"browser": 2},
        events=2,
        recent_ids=((123, 1717462800000),),
    )
    assert state.to_dict() == RECORD


_DROP = object()


def _record(**changes: Any) -> dict[str, Any]:
    """``RECORD`` with keys replaced, or dropped with ``_DROP``."""
    raw = copy.deepcopy(RECORD)
    for key, value in changes.items():
        if value is _DROP:
            del raw[key]
        else:
            raw[key] = value
    return raw


BROKEN: list[Any] = [
    pytest.param(_record(v=2), r"unsupported state record version 2", id="version-2"),
    pytest.param(_record(v=_DROP), r"unsupported state record version None", id="no-version"),
    pytest.param(
        _record(id=_DROP), r"malformed customer state record: KeyError\('id'\)", id="no-id"
    ),
    pytest.param(_record(h=_DROP), r"malformed.*KeyError\('h'\)", id="no-history"),
    pytest.param(_record(mv="one"), r"malformed", id="version-not-int"),
    pytest.param(_record(se="yesterday"), r"malformed", id="entered-not-a-number"),
    pytest.param(
        _record(h=[["discovery", "evaluation"]]), r"malformed.*IndexError", id="short-history-entry"
    ),
    pytest.param(_record(h=5), r"malformed.*TypeError", id="history-not-a-list"),
    pytest.param(_record(t={"browser": "many"}), r"malformed.*ValueError", id="touch-not-int"),
    pytest.param(_record(r=[[1, 2, 3]]), r"malformed.*ValueError", id="recent-id-triple"),
    pytest.param(_record(n=None), r"malformed.*TypeError", id="events-null"),
    pytest.param({}, r"unsupported state record version None", id="empty"),
]


@pytest.mark.parametrize(("raw", "match"), BROKEN)
def test_from_dict_of_a_broken_record_raises_state_error(raw: Any, match: str) -> None:
    with pytest.raises(StateError, match=match):
        CustomerState.from_dict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(["v", 1], id="record-is-a-list"),
        pytest.param(None, id="record-is-null"),
        pytest.param(_record(vi=[["usage", 1]]), id="visits-a-list"),
        pytest.param(_record(t="browser"), id="touches-a-string"),
        pytest.param(_record(ls=10**20), id="time-out-of-range"),
    ],
)
def test_from_dict_of_a_badly_typed_record_raises_state_error(raw: Any) -> None:
    with pytest.raises(StateError, match=r"malformed"):
        CustomerState.from_dict(raw)
