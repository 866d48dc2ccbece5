"""The aida, b2b and freemium presets over time: journeys, skips ahead, moves back, late events.

Each row is an event sequence with explicit times and the ``(to_stage, rule)`` each
event makes. The rule tables and the machines are in test_preset_rules.py.
"""

from __future__ import annotations

from typing import cast

import pytest

from tests.unit.journeys import Move, Step, at, ev, moves, replay, unzip
from tests.unit.test_preset_rules import AIDA_STEPS, B2B_STEPS, FREEMIUM_STEPS, MACHINES, ROUTES


def test_every_rule_is_exercised_by_the_tables() -> None:
    """A new rule in a preset file must come with a row in this file."""
    covered: dict[str, set[str]] = {name: set() for name in MACHINES}
    for preset, routes in ROUTES.items():
        covered[preset] |= {m[1] for route in routes.values() for _, m in route if m}
    for param in [*AIDA_STEPS, *B2B_STEPS, *FREEMIUM_STEPS]:
        expected = cast(Move, param.values[-1])
        if expected:
            covered[str(param.values[0])].add(expected[1])
    for param in JOURNEYS:
        steps = cast(list[Step], param.values[1])
        covered[str(param.values[0])] |= {m[1] for _, m in steps if m}
    for name, machine in MACHINES.items():
        assert {r.name for r in machine.model.rules} == covered[name], name


JOURNEYS = [
    # --- aida
    pytest.param(
        "aida",
        [
            (ev("page", 0, 9), ("awareness", "first_visit")),
            (ev("Email Opened", 0, 10), None),
            (ev("Product Viewed", 1), ("interest", "engaged")),
            (ev("Newsletter Subscribed", 1, 1), None),
            (ev("Product Added to Wishlist", 3), ("desire", "intent")),
            (ev("Product Added", 4), None),
            (ev("Checkout Started", 4, 1), None),
            (ev("Order Completed", 4, 2), ("action", "purchased")),
            (ev("Order Completed", 30), None),
        ],
        id="aida-in-order-repeat-purchase-stays",
    ),
    pytest.param(
        "aida",
        [
            (ev("Demo Requested", 0), ("desire", "intent")),
            (ev("Product Viewed", 1), None),
            (ev("Subscription Started", 2), ("action", "purchased")),
        ],
        id="aida-skip-to-desire",
    ),
    pytest.param(
        "aida",
        [
            (ev("Promotion Clicked", 0), ("awareness", "campaign_touch")),
            (ev("Order Completed", 0, 1), ("action", "purchased")),
            (ev("Order Refunded", 5), ("desire", "order_reversed")),
            (ev("Order Completed", 6), ("action", "purchased")),
        ],
        id="aida-refund-and-buy-again",
    ),
    pytest.param(
        "aida",
        [
            (ev("Subscription Started", 0), ("action", "purchased")),
            (ev("Subscription Cancelled", 40), ("interest", "subscription_cancelled")),
            (ev("Unsubscribed", 41), ("awareness", "unsubscribed")),
            (ev("Email Link Clicked", 60), ("interest", "engaged")),
            (ev("Trial Started", 61), ("desire", "intent")),
            (ev("Subscription Started", 75), ("action", "purchased")),
        ],
        id="aida-cancel-unsubscribe-win-back",
    ),
    # --- b2b
    pytest.param(
        "b2b",
        [
            (ev("Whitepaper Downloaded", 0), ("problem_identification", "content_engaged")),
            (ev("Webinar Registered", 1), None),
            (ev("Case Study Viewed", 3), ("solution_exploration", "exploring")),
            (ev("Security Review Requested", 10), ("requirements_building", "requirements")),
            (ev("Proposal Requested", 20), ("supplier_selection", "shortlisted")),
            (ev("Contract Sent", 25), ("purchase_decision", "contract_sent")),
            (ev("Contract Signed", 27), None),
            (ev("Signed In", 28), None),
            (ev("Feature Used", 28, 5), None),
            (ev("Feature Used", 29), ("customer_success", "adopted")),
            (ev("NPS Submitted", 60, props={"score": 10}), ("advocacy", "promoter")),
            (ev("NPS Submitted", 150, props={"score": 4}), ("customer_success", "detractor")),
            (ev("Case Study Approved", 160), ("advocacy", "advocate")),
        ],
        id="b2b-whole-journey-with-detractor",
    ),
    pytest.param(
        "b2b",
        [
            (ev("Demo Requested", 0), ("solution_exploration", "exploring")),
            (ev("Contract Signed", 1), ("purchase_decision", "signed")),
            (ev("Onboarding Completed", 20), ("customer_success", "onboarded")),
        ],
        id="b2b-skip-from-demo-to-signature",
    ),
    pytest.param(
        "b2b",
        [
            (ev("Pricing Viewed", 0), ("solution_exploration", "exploring")),
            (ev("RFP Submitted", 2), ("requirements_building", "requirements")),
            (ev("Proposal Viewed", 9), ("supplier_selection", "shortlisted")),
            (ev("Deal Lost", 15), ("solution_exploration", "deal_lost")),
            (ev("Trial Started", 200), ("requirements_building", "requirements")),
            (ev("Order Completed", 230), ("purchase_decision", "signed")),
        ],
        id="b2b-lost-deal-then-won",
    ),
    # --- freemium
    pytest.param(
        "freemium",
        [
            (ev("page", 0), ("visitor", "first_visit")),
            (ev("screen", 0, 1), None),
            (ev("Signed Up", 1), ("free_user", "signed_up")),
            (ev("Signed In", 2), None),
            (ev("Plan Upgraded", 10), ("paid_user", "upgraded")),
            (ev("Plan Downgraded", 40, props={"plan": "starter"}), None),
            (ev("Plan Downgraded", 70, props={"plan": "free"}), ("free_user", "downgraded")),
            (ev("Plan Upgraded", 90), ("paid_user", "upgraded")),
            (ev("Subscription Cancelled", 120), ("churned", "cancelled")),
            (ev("Signed In", 150), ("free_user", "returned")),
            (ev("Plan Upgraded", 160), ("paid_user", "upgraded")),
        ],
        id="freemium-up-down-churn-return",
    ),
    pytest.param(
        "freemium",
        [
            (ev("page", 0), ("visitor", "first_visit")),
            (ev("Order Completed", 0, 1), ("paid_user", "upgraded")),
        ],
        id="freemium-visitor-buys-at-once",
    ),
    pytest.param(
        "freemium",
        [
            (ev("Account Created", 0), ("free_user", "signed_up")),
            (ev("Account Deleted", 3), ("churned", "account_deleted")),
            (ev("Account Created", 50), ("free_user", "returned")),
            (ev("Subscription Started", 51), ("paid_user", "upgraded")),
            (ev("Subscription Cancelled", 80), ("churned", "cancelled")),
            (ev("Order Completed", 100), ("paid_user", "won_back")),
        ],
        id="freemium-deleted-returns-and-won-back",
    ),
]


@pytest.mark.parametrize(("preset", "steps"), JOURNEYS)
def test_journey(preset: str, steps: list[Step]) -> None:
    events, expected = unzip(steps)
    _, changes = replay(MACHINES[preset], events)
    assert moves(changes) == expected


def test_visits_count_returns() -> None:
    state, changes = replay(
        MACHINES["aida"],
        [
            ev("Order Completed", 0),
            ev("Order Cancelled", 1),
            ev("Order Completed", 2),
            ev("Order Refunded", 3),
            ev("Order Completed", 4),
        ],
    )
    assert [c.visit for c in changes if c] == [1, 1, 2, 2, 3]
    assert state.visits == {"action": 3, "desire": 2}


# ---------------------------------------------------------------------------
# Late events


@pytest.mark.parametrize(
    ("preset", "steps"),
    [
        pytest.param(
            "aida",
            [(ev("Order Completed", 5), ("action", "purchased")), (ev("Order Cancelled", 4), None)],
            id="aida-late-cancel-does-not-move-back",
        ),
        pytest.param(
            "b2b",
            [
                (ev("Contract Signed", 0), ("purchase_decision", "signed")),
                (ev("Referral Sent", 30), ("advocacy", "advocate")),
                (ev("NPS Submitted", 29, props={"score": 2}), None),
            ],
            id="b2b-late-detractor-does-not-move-back",
        ),
        pytest.param(
            "freemium",
            [
                (ev("Plan Upgraded", 0), ("paid_user", "upgraded")),
                (ev("Feature Used", 10, 12), None),
                (ev("Plan Downgraded", 10, 11, props={"plan": "free"}), None),
            ],
            id="freemium-late-downgrade-does-not-move-back",
        ),
        pytest.param(
            "freemium",
            [
                (ev("Plan Upgraded", 0), ("paid_user", "upgraded")),
                (ev("Subscription Cancelled", 10, 12), ("churned", "cancelled")),
                (ev("Signed In", 10, 11), None),
            ],
            id="freemium-late-sign-in-does-not-revive",
        ),
    ],
)
def test_late_event_does_not_move_back(preset: str, steps: list[Step]) -> None:
    events, expected = unzip(steps)
    state, changes = replay(MACHINES[preset], events)
    assert moves(changes) == expected
    assert state.late_events == 1


@pytest.mark.parametrize(
    ("preset", "steps"),
    [
        pytest.param(
            "aida",
            [
                (ev("Product Viewed", 5), ("interest", "engaged")),
                (ev("Product Added", 3), ("desire", "intent")),
            ],
            id="aida-forward",
        ),
        pytest.param(
            "b2b",
            [
                (ev("Pricing Viewed", 5), ("solution_exploration", "exploring")),
                (ev("Contract Signed", 4), ("purchase_decision", "signed")),
            ],
            id="b2b-forward",
        ),
        pytest.param(
            # the rule says late: true - a billing webhook that arrives after newer app events
            "freemium",
            [
                (ev("Plan Upgraded", 0), ("paid_user", "upgraded")),
                (ev("Feature Used", 10, 12), None),
                (ev("Subscription Cancelled", 10, 11, channel="server"), ("churned", "cancelled")),
            ],
            id="freemium-late-cancellation-applies",
        ),
        pytest.param(
            "freemium",
            [
                (ev("Signed Up", 0), ("free_user", "signed_up")),
                (ev("page", 10, 12), None),
                (ev("Account Deleted", 10, 11), ("churned", "account_deleted")),
            ],
            id="freemium-late-deletion-applies",
        ),
    ],
)
def test_late_event_that_may_apply_moves_and_is_marked_late(preset: str, steps: list[Step]) -> None:
    events, expected = unzip(steps)
    state, changes = replay(MACHINES[preset], events)
    assert moves(changes) == expected
    last = changes[-1]
    assert last is not None
    assert last.late is True
    assert last.at == events[-1].timestamp
    assert state.late_events == 1


# ---------------------------------------------------------------------------
# b2b: product activity on 2 distinct UTC days after the purchase decision


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            [
                (ev("Contract Signed", 5, 12), ("purchase_decision", "signed")),
                (ev("Signed In", 5, 15), None),
                (ev("Feature Used", 6, 9), ("customer_success", "adopted")),
            ],
            id="signing-day-counts",
        ),
        pytest.param(
            [
                (ev("Contract Sent", 5), None),
                (ev("Signed In", 6, 8), None),
                (ev("Feature Used", 6, 20), None),
                (ev("Invite Sent", 6, 23), None),
                (ev("Account Added User", 7, 0), None),
            ],
            id="new-customer-contract-sent-is-ignored",
        ),
        pytest.param(
            [
                (ev("Proposal Viewed", 4), ("supplier_selection", "shortlisted")),
                (ev("Contract Sent", 5), ("purchase_decision", "contract_sent")),
                (ev("Signed In", 6, 8), None),
                (ev("Feature Used", 6, 20), None),
                (ev("Invite Sent", 6, 23), None),
                (ev("Account Added User", 7, 0), ("customer_success", "adopted")),
            ],
            id="same-day-activity-counts-once",
        ),
        pytest.param(
            # trial activity before the purchase does not count
            [
                (ev("Trial Started", 0), ("requirements_building", "requirements")),
                (ev("Signed In", 1), None),
                (ev("Feature Used", 2), None),
                (ev("Contract Signed", 3), ("purchase_decision", "signed")),
                (ev("Feature Used", 4), None),
                (ev("page", 5), None),
                (ev("Signed In", 6), ("customer_success", "adopted")),
            ],
            id="trial-activity-does-not-count",
        ),
    ],
)
def test_b2b_adoption(steps: list[Step]) -> None:
    events, expected = unzip(steps)
    _, changes = replay(MACHINES["b2b"], events)
    assert moves(changes) == expected


def test_b2b_activity_on_the_signing_day_counts_after_trial_activity_that_morning() -> None:
    events = [
        ev("Trial Started", 0),
        ev("Signed In", 5, 9),  # trial use, before the signature
        ev("Contract Signed", 5, 12),
        ev("Feature Used", 5, 15),  # day 1 in purchase_decision
        ev("Feature Used", 6, 9),  # day 2 in purchase_decision
    ]
    state, changes = replay(MACHINES["b2b"], events)
    assert moves(changes)[-1] == ("customer_success", "adopted")
    assert state.history[-1].at == at(6, 9)
