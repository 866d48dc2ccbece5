"""The aida, b2b and freemium presets, rule by rule: one event from each stage.

Expectations are written out from a reading of the preset files; each row is a stage,
the event a customer in it sends on day 1, and the ``(to_stage, rule)`` it makes.
Multi-event journeys, late events and the coverage check are in test_preset_journeys.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.journey import StageMachine, load_preset
from tests.unit.journeys import Move, ev, final_stage, moves, replay

MACHINES = {name: StageMachine(load_preset(name)) for name in ("aida", "b2b", "freemium")}

Route = list[tuple[str, Move]]

# How a new customer reaches each stage on day 0: (event name, the move it makes).
ROUTES: dict[str, dict[str, Route]] = {
    "aida": {
        "new": [],
        "awareness": [("page", ("awareness", "first_visit"))],
        "interest": [("Product Viewed", ("interest", "engaged"))],
        "desire": [("Product Added", ("desire", "intent"))],
        "action": [("Order Completed", ("action", "purchased"))],
    },
    "b2b": {
        "new": [],
        "problem_identification": [("page", ("problem_identification", "first_visit"))],
        "solution_exploration": [("Pricing Viewed", ("solution_exploration", "exploring"))],
        "requirements_building": [("Trial Started", ("requirements_building", "requirements"))],
        "supplier_selection": [("Quote Requested", ("supplier_selection", "shortlisted"))],
        "purchase_decision": [("Contract Signed", ("purchase_decision", "signed"))],
        "customer_success": [
            ("Contract Signed", ("purchase_decision", "signed")),
            ("Onboarding Completed", ("customer_success", "onboarded")),
        ],
        "advocacy": [
            ("Contract Signed", ("purchase_decision", "signed")),
            ("Referral Sent", ("advocacy", "advocate")),
        ],
    },
    "freemium": {
        "new": [],
        "visitor": [("page", ("visitor", "first_visit"))],
        "free_user": [("Signed Up", ("free_user", "signed_up"))],
        "paid_user": [("Order Completed", ("paid_user", "upgraded"))],
        "churned": [
            ("Order Completed", ("paid_user", "upgraded")),
            ("Subscription Cancelled", ("churned", "cancelled")),
        ],
    },
}


def step(
    preset: str, stage: str, name: str, expected: Move, props: dict[str, Any] | None = None
) -> Any:
    """A table row: a customer of ``preset`` in ``stage`` sends ``name`` on day 1."""
    suffix = "" if not props else "-" + ",".join(f"{k}={v}" for k, v in props.items())
    return pytest.param(preset, stage, name, props, expected, id=f"{preset}-{stage}-{name}{suffix}")


def each(preset: str, stages: tuple[str, ...], names: tuple[str, ...], expected: Move) -> list[Any]:
    return [step(preset, s, n, expected) for s in stages for n in names]


AIDA_AWARE = ("Email Opened", "Promotion Viewed", "Promotion Clicked", "Video Ad Started")
AIDA_INTEREST = (
    "Products Searched",
    "Product List Viewed",
    "Product Clicked",
    "Product Viewed",
    "Email Link Clicked",
    "Newsletter Subscribed",
    "Signed Up",
)
AIDA_DESIRE = (
    "Product Added",
    "Product Added to Wishlist",
    "Checkout Started",
    "Payment Info Entered",
    "Trial Started",
    "Demo Requested",
)
BUY = ("Order Completed", "Subscription Started")

AIDA_STEPS = [
    *each("aida", ("new",), ("page", "screen"), ("awareness", "first_visit")),
    *each("aida", ("new",), AIDA_AWARE, ("awareness", "campaign_touch")),
    *each("aida", ("awareness", "interest", "action"), ("page", "Email Opened"), None),
    *each("aida", ("new", "awareness"), AIDA_INTEREST, ("interest", "engaged")),
    *each("aida", ("desire", "action"), ("Product Viewed", "Signed Up"), None),
    *each("aida", ("new", "awareness", "interest"), AIDA_DESIRE, ("desire", "intent")),
    *each("aida", ("action",), ("Product Added", "Checkout Started"), None),
    # skip ahead: a purchase from any earlier stage, even as the first touch
    *each("aida", ("new", "awareness", "interest", "desire"), BUY, ("action", "purchased")),
    # a repeat purchase stays in action
    *each("aida", ("action",), BUY, None),
    # moves back
    *each("aida", ("action",), ("Order Cancelled", "Order Refunded"), ("desire", "order_reversed")),
    step("aida", "action", "Subscription Cancelled", ("interest", "subscription_cancelled")),
    *each(
        "aida", ("new", "interest", "desire"), ("Order Cancelled", "Subscription Cancelled"), None
    ),
    step("aida", "interest", "Unsubscribed", ("awareness", "unsubscribed")),
    *each("aida", ("new", "awareness", "desire", "action"), ("Unsubscribed",), None),
]

B2B_RESEARCH = (
    "Content Downloaded",
    "Whitepaper Downloaded",
    "Webinar Registered",
    "Webinar Attended",
)
B2B_EXPLORE = ("Product Viewed", "Pricing Viewed", "Case Study Viewed", "Demo Requested")
B2B_REQUIRE = (
    "Trial Started",
    "Requirements Submitted",
    "Security Review Requested",
    "RFP Submitted",
)
B2B_SELECT = ("Quote Requested", "Proposal Requested", "Proposal Viewed")
B2B_SIGN = ("Contract Signed", "Order Completed")
B2B_ADVOCATE = ("Referral Sent", "Review Submitted", "Case Study Approved")
PRE = (
    "problem_identification",
    "solution_exploration",
    "requirements_building",
    "supplier_selection",
)

B2B_STEPS = [
    *each("b2b", ("new",), ("page", "screen"), ("problem_identification", "first_visit")),
    *each("b2b", ("new",), B2B_RESEARCH, ("problem_identification", "content_engaged")),
    *each(
        "b2b",
        ("problem_identification", "solution_exploration"),
        ("page", "Webinar Attended"),
        None,
    ),
    *each(
        "b2b", ("new", "problem_identification"), B2B_EXPLORE, ("solution_exploration", "exploring")
    ),
    *each("b2b", ("requirements_building", "customer_success"), ("Pricing Viewed",), None),
    *each(
        "b2b",
        ("new", "problem_identification", "solution_exploration"),
        B2B_REQUIRE,
        ("requirements_building", "requirements"),
    ),
    *each("b2b", ("supplier_selection", "purchase_decision"), ("RFP Submitted",), None),
    *each(
        "b2b",
        ("new", "problem_identification", "solution_exploration", "requirements_building"),
        B2B_SELECT,
        ("supplier_selection", "shortlisted"),
    ),
    *each("b2b", ("purchase_decision", "customer_success"), ("Proposal Viewed",), None),
    *each(
        "b2b",
        ("solution_exploration", "requirements_building", "supplier_selection"),
        ("Contract Sent",),
        ("purchase_decision", "contract_sent"),
    ),
    *each("b2b", ("new", "problem_identification", "customer_success"), ("Contract Sent",), None),
    # skip ahead: signed contract or order from any pre-purchase stage
    *each("b2b", ("new", *PRE), B2B_SIGN, ("purchase_decision", "signed")),
    *each("b2b", ("customer_success", "advocacy"), B2B_SIGN, None),
    # move back: a lost deal
    *each(
        "b2b",
        ("requirements_building", "supplier_selection", "purchase_decision"),
        ("Deal Lost",),
        ("solution_exploration", "deal_lost"),
    ),
    *each("b2b", ("problem_identification", "customer_success"), ("Deal Lost",), None),
    step("b2b", "purchase_decision", "Onboarding Completed", ("customer_success", "onboarded")),
    *each("b2b", ("requirements_building", "supplier_selection"), ("Onboarding Completed",), None),
    # one day of activity after the purchase decision is not yet success
    step("b2b", "purchase_decision", "Signed In", None),
    *each("b2b", ("purchase_decision", "customer_success"), B2B_ADVOCATE, ("advocacy", "advocate")),
    *each("b2b", ("supplier_selection",), B2B_ADVOCATE, None),
    *[
        step("b2b", s, "NPS Submitted", ("advocacy", "promoter"), {"score": score})
        for s in ("purchase_decision", "customer_success")
        for score in (9, 10)
    ],
    *[
        step("b2b", s, "NPS Submitted", None, {"score": score})
        for s in ("purchase_decision", "customer_success", "supplier_selection")
        for score in (3, 7, 8)
    ],
    # move back: a detractor among advocates
    *[
        step(
            "b2b", "advocacy", "NPS Submitted", ("customer_success", "detractor"), {"score": score}
        )
        for score in (0, 6)
    ],
    *[step("b2b", "advocacy", "NPS Submitted", None, {"score": score}) for score in (7, 10)],
]

FREE_BUY = ("Order Completed", "Subscription Started", "Plan Upgraded")

FREEMIUM_STEPS = [
    *each("freemium", ("new",), ("page", "screen"), ("visitor", "first_visit")),
    *each("freemium", ("visitor", "free_user", "churned"), ("page",), None),
    *each(
        "freemium", ("new", "visitor"), ("Signed Up", "Account Created"), ("free_user", "signed_up")
    ),
    *each("freemium", ("paid_user",), ("Signed Up", "Signed In"), None),
    # skip ahead: a visitor (or a first touch) that buys skips the free plan
    *each("freemium", ("new", "visitor", "free_user"), FREE_BUY, ("paid_user", "upgraded")),
    *each("freemium", ("paid_user",), FREE_BUY, None),
    # moves back
    step("freemium", "paid_user", "Plan Downgraded", ("free_user", "downgraded"), {"plan": "free"}),
    step("freemium", "paid_user", "Plan Downgraded", None, {"plan": "starter"}),
    step("freemium", "paid_user", "Plan Downgraded", None),
    step("freemium", "free_user", "Plan Downgraded", None, {"plan": "free"}),
    step("freemium", "paid_user", "Subscription Cancelled", ("churned", "cancelled")),
    *each("freemium", ("new", "visitor", "free_user"), ("Subscription Cancelled",), None),
    *each(
        "freemium", ("free_user", "paid_user"), ("Account Deleted",), ("churned", "account_deleted")
    ),
    *each("freemium", ("new", "visitor", "churned"), ("Account Deleted",), None),
    # coming back
    *each(
        "freemium",
        ("churned",),
        ("Signed In", "Signed Up", "Account Created"),
        ("free_user", "returned"),
    ),
    *each("freemium", ("churned",), FREE_BUY, ("paid_user", "won_back")),
    *each("freemium", ("free_user",), ("Signed In",), None),
]


@pytest.mark.parametrize(
    ("preset", "stage", "name", "props", "expected"), [*AIDA_STEPS, *B2B_STEPS, *FREEMIUM_STEPS]
)
def test_rule_table(
    preset: str, stage: str, name: str, props: dict[str, Any] | None, expected: Move
) -> None:
    route = ROUTES[preset][stage]
    events = [ev(n, 0, hour) for hour, (n, _) in enumerate(route)]
    state, changes = replay(MACHINES[preset], [*events, ev(name, 1, props=props)])
    expected_moves = [*(m for _, m in route), expected]
    assert moves(changes) == expected_moves
    assert state.stage == final_stage(expected_moves)
