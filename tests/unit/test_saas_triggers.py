"""Each default trigger of the saas preset, firing and not firing, through event time.

Every row is a journey of one customer (events at explicit days), the day the
partition clock is then advanced to, and the triggers expected to go out:
(rule, type, fired at, stage). The policy lets everything through, so these rows
test the rules alone (the gate is tested in test_policy.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from engine.journey import Event
from tests.unit.journeys import at, ev
from tests.unit.triggering import Partition, fired

Expected = list[tuple[str, str, datetime, str | None]]

ROWS: list[Any] = [
    # trial_stalled: 7 days in evaluation without buying
    pytest.param(
        [ev("Signed Up", 0, 9)],
        8,
        [("trial_stalled", "nurture", at(7, 9), "evaluation")],
        id="trial_stalled-fires",
    ),
    pytest.param([ev("Signed Up", 0, 9)], 7, [], id="trial_stalled-not-before-7-days"),
    pytest.param(
        [ev("Signed Up", 0), ev("Signed In", 3), ev("Feature Used", 6)],
        8,
        [("trial_stalled", "nurture", at(7), "evaluation")],
        id="trial_stalled-fires-despite-trial-use",
    ),
    pytest.param(
        [ev("Signed Up", 0), ev("Order Completed", 5), ev("Signed In", 6)],
        12,
        [],
        id="trial_stalled-not-after-buying",
    ),
    # onboarding_stalled: bought, no product activity for 3 days
    pytest.param(
        [ev("Order Completed", 0, 15)],
        4,
        [("onboarding_stalled", "nurture", at(3, 15), "acquisition")],
        id="onboarding_stalled-fires",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("page", 1), ev("Email Opened", 2)],
        4,
        [("onboarding_stalled", "nurture", at(3), "acquisition")],
        id="onboarding_stalled-fires-page-views-are-not-activity",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 2)], 5, [], id="onboarding_stalled-not-when-used"
    ),
    # inactive: paying and no activity for 14 days -> churn risk, stage at_risk
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 1, 10)],
        16,
        [("inactive", "churn-risk", at(15, 10), "at_risk")],
        id="inactive-fires-and-moves-to-at_risk",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 1), ev("Feature Used", 10)],
        23,
        [],
        id="inactive-not-when-the-customer-came-back",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 1), ev("Feature Used", 10)],
        25,
        [("inactive", "churn-risk", at(24), "at_risk")],
        id="inactive-counts-from-the-last-activity",
    ),
    pytest.param(
        [
            ev("Order Completed", 0),
            ev("Signed In", 1),
            ev("Subscription Renewed", 8),  # usage -> retention: the clock keeps running
        ],
        16,
        [("inactive", "churn-risk", at(15), "at_risk")],
        id="inactive-clock-runs-across-paying-stages",
    ),
    pytest.param(
        [ev("Signed Up", 0), ev("Signed In", 1), ev("Subscription Cancelled", 2)],
        20,
        [],
        id="inactive-not-outside-paying-stages",
    ),
    # payment_failed: at once
    pytest.param(
        [ev("Order Completed", 0), ev("Payment Failed", 2, 13)],
        2,
        [("payment_failed", "churn-risk", at(2, 13), "at_risk")],
        id="payment_failed-fires",
    ),
    pytest.param(
        [ev("page", 0), ev("Payment Failed", 1)], 1, [], id="payment_failed-not-for-a-visitor"
    ),
    # NPS: detractor (<= 6) and promoter (>= 9)
    pytest.param(
        [ev("Order Completed", 0), ev("NPS Submitted", 2, props={"score": 6})],
        2,
        [("detractor", "churn-risk", at(2), "at_risk")],
        id="detractor-fires",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("NPS Submitted", 2, props={"score": "2"})],
        2,
        [("detractor", "churn-risk", at(2), "at_risk")],
        id="detractor-fires-on-a-numeric-string",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("NPS Submitted", 2, props={"score": 7})],
        2,
        [],
        id="detractor-and-promoter-not-for-a-passive",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("NPS Submitted", 2, props={})],
        2,
        [],
        id="nps-without-a-score-fires-nothing",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("NPS Submitted", 2, props={"score": 9})],
        2,
        [("promoter", "advocacy-ask", at(2), "advocacy")],
        id="promoter-fires",
    ),
    pytest.param(
        [ev("page", 0), ev("NPS Submitted", 1, props={"score": 10})],
        1,
        [],
        id="promoter-not-for-a-visitor",
    ),
    # churned_30d: 30 days after churning, unless the customer came back
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 1), ev("Subscription Cancelled", 5, 8)],
        36,
        [("churned_30d", "win-back", at(35, 8), "churned")],
        id="churned_30d-fires",
    ),
    pytest.param(
        [ev("Order Completed", 0), ev("Signed In", 1), ev("Subscription Cancelled", 5)],
        34,
        [],
        id="churned_30d-not-before-30-days",
    ),
    pytest.param(
        [
            ev("Order Completed", 0),
            ev("Signed In", 1),
            ev("Subscription Cancelled", 5),
            ev("Order Completed", 20),
        ],
        36,
        [
            ("onboarding_stalled", "nurture", at(23), "acquisition"),
            ("inactive", "churn-risk", at(34), "at_risk"),
        ],
        id="churned_30d-not-after-buying-again",
    ),
]


@pytest.mark.parametrize(("events", "until_day", "expected"), ROWS)
def test_saas_default_trigger(events: list[Event], until_day: int, expected: Expected) -> None:
    part = Partition()
    part.run(events)
    part.advance(at(until_day))
    assert fired(part.effects) == expected
    # Whatever went out, went out once and with a decision that says so.
    assert len({t.trigger_id for t in part.triggers()}) == len(expected)
    assert [d.outcome.value for d in part.decisions()] == ["sent"] * len(expected)


def test_inactive_moves_the_stage_and_says_so() -> None:
    part = Partition()
    part.run([ev("Order Completed", 0), ev("Signed In", 1)])
    part.advance(at(16))
    assert part.moves() == [
        (None, "acquisition", "purchased"),
        ("acquisition", "onboarding", "first_activity"),
        ("onboarding", "at_risk", "inactive"),
    ]
    state = part.states["c1"]
    assert state.stage == "at_risk"
    assert state.stage_entered_at == at(15)
    assert state.history[-1].message_id == f"timer:inactive@{int(at(15).timestamp() * 1000)}"
    # The at-risk customer who uses the product again is reactivated, and is watched again.
    part.send(ev("Feature Used", 20))
    assert state.stage == "at_risk"
    assert part.states["c1"].stage == "usage"
    part.advance(at(35))
    assert [t.rule for t in part.triggers()] == ["inactive", "inactive"]
    assert part.triggers()[1].fired_at == at(34)


def test_onboarding_stalled_and_inactive_both_come_for_a_customer_who_never_starts() -> None:
    part = Partition()
    part.send(ev("Order Completed", 0))
    part.advance(at(20))
    assert fired(part.effects) == [
        ("onboarding_stalled", "nurture", at(3), "acquisition"),
        ("inactive", "churn-risk", at(14), "at_risk"),
    ]


def test_a_customer_who_comes_back_after_churning_is_nurtured_as_a_trial_again() -> None:
    part = Partition()
    part.run([ev("Order Completed", 0), ev("Subscription Cancelled", 5), ev("Trial Started", 20)])
    part.advance(at(40))
    assert fired(part.effects) == [
        ("onboarding_stalled", "nurture", at(3), "acquisition"),
        ("trial_stalled", "nurture", at(27), "evaluation"),
    ]
