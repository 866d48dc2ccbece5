"""The stage machine under the saas preset: every rule, as a table and as journeys."""

from __future__ import annotations

from typing import Any, cast

import pytest

from engine.journey import Event, StageMachine, load_preset
from tests.unit.journeys import Move, Step, ev, final_stage, moves, replay, unzip

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
