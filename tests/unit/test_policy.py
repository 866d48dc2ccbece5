"""The delivery-policy gate: each decision, with its reason, and held triggers released."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, time
from typing import Any

import orjson
import pytest

from engine.ingest import decode
from engine.journey import (
    Cause,
    DeliveryPolicy,
    ModelError,
    Outcome,
    QuietHours,
    TriggerFired,
    TriggerMemory,
    TriggerType,
)
from engine.journey.policy import decide, parse_cooldowns, parse_quiet_hours, supersede
from engine.journey.state import to_ms
from engine.journey.trigger_state import Held, pack_decided, trigger_digest
from tests.unit.journeys import at, ev
from tests.unit.triggering import Partition, engine, outcomes

NURTURE, CHURN = TriggerType.NURTURE, TriggerType.CHURN_RISK
HOUR = 3_600_000

POLICY = DeliveryPolicy(
    cooldown_ms={NURTURE: 3 * 24 * HOUR, CHURN: 24 * HOUR},
    daily_cap=2,
    quiet=QuietHours(time(21), time(8)),
    default_timezone="UTC",
    suppressed=frozenset({"blocked"}),
    max_held=2,
)
NOON = at(3, 12)  # 2024-06-06 12:00 UTC, a Thursday


def trig(
    kind: TriggerType = NURTURE,
    priority: int = 30,
    tid: str = "ab" * 16,
    rule: str = "trial_stalled",
    customer: str = "c1",
) -> TriggerFired:
    return TriggerFired(
        trigger_id=tid,
        type=kind,
        customer_id=customer,
        stage="evaluation",
        rule=rule,
        fired_at=at(3, 11),
        cause=Cause(message_id="m-1"),
        model="saas",
        model_version=1,
        priority=priority,
    )


def sent_before(
    hours: float, kind: TriggerType = NURTURE, priority: int = 30, tid: str = "01" * 16
) -> tuple[int, int]:
    at_s = (to_ms(NOON) - int(hours * HOUR)) // 1000
    return at_s, pack_decided(trigger_digest(tid), True, kind, priority)


def memory(*entries: tuple[int, int], **changes: Any) -> TriggerMemory:
    """Entries without rule and outcome, as a record stored before they were kept."""
    flat = tuple(v for entry in entries for v in entry)
    return replace(TriggerMemory(decided=flat, why=(None,) * len(flat)), **changes)


HELD = Held("cd" * 16, "promoter", TriggerType.ADVOCACY_ASK, 20, "advocacy", 0, "event:x", 1)

CASES: list[Any] = [
    pytest.param(memory(), trig(), NOON, Outcome.SENT, r"^passed the delivery policy$", id="sent"),
    pytest.param(
        memory((to_ms(at(1)) // 1000, pack_decided(trigger_digest("ab" * 16), False, NURTURE, 30))),
        trig(),
        NOON,
        Outcome.DUPLICATE,
        r"^trigger already decided at 2024-06-04T00:00:00Z; not sent again$",
        id="duplicate-of-a-decided-trigger",
    ),
    pytest.param(
        memory(held=(replace(HELD, trigger_id="ab" * 16),)),
        trig(),
        NOON,
        Outcome.DUPLICATE,
        r"^trigger already held for quiet hours$",
        id="duplicate-of-a-held-trigger",
    ),
    pytest.param(
        memory(),
        replace(trig(), customer_id="blocked"),
        NOON,
        Outcome.SUPPRESSED,
        r"^customer is on the suppression list$",
        id="suppression-list",
    ),
    pytest.param(
        memory(unsubscribed=True),
        trig(CHURN, 95),
        NOON,
        Outcome.SUPPRESSED,
        r"^customer unsubscribed \(Unsubscribed event\)$",
        id="unsubscribed",
    ),
    pytest.param(
        memory(sent_before(30)),
        trig(),
        NOON,
        Outcome.COOLDOWN,
        r"^a nurture trigger went out at 2024-06-05T06:00:00Z; cooldown 3d lasts until "
        r"2024-06-08T06:00:00Z$",
        id="cooldown",
    ),
    pytest.param(
        memory(sent_before(30, CHURN, 90)),
        trig(),
        NOON,
        Outcome.SENT,
        r"^passed",
        id="cooldown-is-per-type",
    ),
    pytest.param(
        memory(sent_before(80)), trig(), NOON, Outcome.SENT, r"^passed", id="cooldown-over"
    ),
    pytest.param(
        memory(sent_before(5, CHURN, 90, "02" * 16), sent_before(4, CHURN, 90, "03" * 16)),
        trig(),
        NOON,
        Outcome.CAPPED,
        r"^2 triggers of priority 30 or more went out in the last 24 h \(cap 2\)$",
        id="capped",
    ),
    pytest.param(
        memory(
            sent_before(5, NURTURE, 30, "02" * 16),
            sent_before(90, NURTURE, 30, "03" * 16),
            sent_before(4, TriggerType.ADVOCACY_ASK, 20, "04" * 16),
        ),
        trig(CHURN, 90),
        NOON,
        Outcome.SENT,
        r"^passed",
        id="churn-risk-beats-the-nurture-that-filled-the-day",
    ),
    pytest.param(
        memory(sent_before(25, CHURN, 90, "02" * 16), sent_before(4, CHURN, 90, "03" * 16)),
        trig(),
        NOON,
        Outcome.SENT,
        r"^passed",
        id="cap-window-rolls",
    ),
    pytest.param(
        memory(),
        trig(),
        at(3, 22),
        Outcome.HELD,
        r"^quiet hours 21:00-08:00 in UTC; held until 2024-06-07T08:00:00Z$",
        id="held-before-midnight",
    ),
    pytest.param(
        memory(),
        trig(),
        at(3, 6, 30),
        Outcome.HELD,
        r"^quiet hours 21:00-08:00 in UTC; held until 2024-06-06T08:00:00Z$",
        id="held-after-midnight",
    ),
    pytest.param(
        memory(timezone="America/New_York"),
        trig(),
        at(3, 22),  # 18:00 in New York
        Outcome.SENT,
        r"^passed",
        id="customer-zone-not-quiet",
    ),
    pytest.param(
        memory(timezone="Asia/Tokyo"),
        trig(),
        NOON,  # 21:00 in Tokyo
        Outcome.HELD,
        r"^quiet hours 21:00-08:00 in Asia/Tokyo; held until 2024-06-06T23:00:00Z$",
        id="customer-zone-quiet",
    ),
    pytest.param(
        memory(timezone="Mars/Olympus"),
        trig(),
        at(3, 22),
        Outcome.HELD,
        r"in UTC; held until",
        id="unknown-zone-uses-the-default",
    ),
    pytest.param(
        memory(held=(HELD, replace(HELD, trigger_id="ef" * 16))),
        trig(),
        at(3, 22),
        Outcome.CAPPED,
        r"^quiet hours 21:00-08:00 in UTC and already 2 triggers held \(at most 2\)$",
        id="hold-queue-full",
    ),
    pytest.param(
        memory(timezone="Europe/Berlin"),
        trig(),
        datetime(2024, 3, 31, 0, 30, tzinfo=UTC),  # 01:30 CET, the night clocks go forward
        Outcome.HELD,
        r"held until 2024-03-31T06:00:00Z$",  # 08:00 CEST
        id="dst-night",
    ),
]


@pytest.mark.parametrize(("mem", "trigger", "now", "outcome", "reason"), CASES)
def test_each_decision_names_its_reason(
    mem: TriggerMemory, trigger: TriggerFired, now: datetime, outcome: Outcome, reason: str
) -> None:
    after, decision = decide(POLICY, mem, trigger, now)
    assert decision.outcome is outcome
    assert re.search(reason, decision.reason), decision.reason
    assert (decision.trigger_id, decision.rule, decision.cause) == (
        trigger.trigger_id,
        trigger.rule,
        trigger.cause,
    )
    assert decision.decided_at == now
    if outcome is Outcome.DUPLICATE:
        assert after is mem
    elif outcome is Outcome.HELD:
        assert after.held[-1].trigger_id == trigger.trigger_id
        assert decision.release_at is not None
        assert after.held[-1].release_ms == to_ms(decision.release_at)
        assert after.decided == mem.decided
    else:
        # Remembered, with its rule and outcome: the same trigger again is a duplicate.
        entry = after.decisions()[-1]
        assert (entry.digest, entry.sent, entry.priority, entry.rule, entry.outcome) == (
            trigger_digest(trigger.trigger_id),
            outcome is Outcome.SENT,
            trigger.priority,
            trigger.rule,
            outcome.value,
        )
        assert len(after.why) == len(after.decided)
        assert after.why[:-2] == mem.why  # older entries keep theirs (none here)
        assert decide(POLICY, after, trigger, now)[1].outcome is Outcome.DUPLICATE


def test_memory_forgets_old_and_surplus_decisions() -> None:
    policy = replace(POLICY, max_ids=3, quiet=None, daily_cap=0, cooldown_ms={})
    mem = TriggerMemory()
    for i in range(5):
        mem, d = decide(policy, mem, trig(tid=f"{i:02d}" * 16), at(i))
        assert d.outcome is Outcome.SENT
    assert [e.digest for e in mem.decisions()] == [
        trigger_digest(f"{i:02d}" * 16) for i in (2, 3, 4)
    ]
    mem, _ = decide(policy, mem, trig(tid="ff" * 16), at(40))
    assert len(mem.decisions()) == 1  # the others are older than 30 days


def test_trimming_keeps_each_rule_and_outcome_with_its_decision() -> None:
    policy = replace(POLICY, max_ids=3, quiet=None, daily_cap=0)
    mem = TriggerMemory()
    steps = [  # (day, rule, type, customer): what it gives
        (0, "r0", NURTURE, "c1"),  # sent
        (1, "r1", NURTURE, "c1"),  # cooldown: a nurture trigger went out on day 0
        (1, "r2", CHURN, "blocked"),  # suppressed
        (2, "r3", CHURN, "c1"),  # sent
        (3, "r4", CHURN, "c1"),  # sent (the churn-risk cooldown is 1 day)
    ]
    for n, (day, rule, kind, who) in enumerate(steps):
        mem, _ = decide(
            policy, mem, trig(kind, tid=f"{n:02d}" * 16, rule=rule, customer=who), at(day)
        )
    mem, _ = supersede(policy, mem, trig(tid="ee" * 16, rule="r5"), at(3, 1), "moved on")
    assert len(mem.why) == len(mem.decided) == 6
    assert [(e.rule, e.outcome, e.digest) for e in mem.decisions()] == [
        ("r3", "sent", trigger_digest("03" * 16)),
        ("r4", "sent", trigger_digest("04" * 16)),
        ("r5", "superseded", trigger_digest("ee" * 16)),
    ]
    # Older than the id memory: forgotten with their rules and outcomes.
    mem, _ = decide(policy, mem, trig(CHURN, tid="ff" * 16, rule="r6"), at(40))
    assert (mem.why, [(e.rule, e.outcome) for e in mem.decisions()]) == (
        ("r6", 0),
        [("r6", "sent")],
    )


def test_the_outcomes_of_each_kind_are_remembered() -> None:
    policy = replace(POLICY, max_ids=8, quiet=None, daily_cap=0)
    mem = TriggerMemory()
    for n, (who, rule) in enumerate([("c1", "a"), ("c1", "b"), ("blocked", "c")]):
        mem, d = decide(policy, mem, trig(tid=f"{n:02d}" * 16, rule=rule, customer=who), NOON)
    capped = replace(POLICY, quiet=None, cooldown_ms={}, daily_cap=1)
    mem, d = decide(capped, mem, trig(tid="dd" * 16, rule="d"), NOON)
    assert [(e.rule, e.outcome) for e in mem.decisions()] == [
        ("a", "sent"),
        ("b", "cooldown"),
        ("c", "suppressed"),
        ("d", "capped"),
    ]
    assert d.outcome is Outcome.CAPPED
    # A rule name is interned: every customer's memory shares one string.
    rule = "".join(["pay", "ment_failed"])
    mem, _ = decide(policy, mem, trig(CHURN, tid="cc" * 16, rule=rule), at(9))
    assert mem.why[-2] is sys.intern("payment_failed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21:00-08:00", QuietHours(time(21), time(8))),
        (" 9:30 - 17:45 ", QuietHours(time(9, 30), time(17, 45))),
        ("off", None),
        ("", None),
    ],
)
def test_quiet_hours_parse(text: str, expected: QuietHours | None) -> None:
    assert parse_quiet_hours(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("21-08", r"is not \"HH:MM-HH:MM\""),
        ("25:00-08:00", r"hour must be"),
        ("08:00-08:00", "different"),
    ],
)
def test_bad_quiet_hours_are_refused(text: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        parse_quiet_hours(text)


def test_cooldowns_parse_per_type() -> None:
    assert parse_cooldowns("nurture=3d, churn-risk=12h") == {
        NURTURE: 3 * 24 * HOUR,
        CHURN: 12 * HOUR,
    }
    with pytest.raises(ModelError, match=r"unknown type 'email'"):
        parse_cooldowns("email=1d")
    with pytest.raises(ModelError, match=r"is not type=duration"):
        parse_cooldowns("nurture")


def test_a_policy_must_remember_ids_as_long_as_its_cooldowns() -> None:
    with pytest.raises(ValueError, match="id_memory_ms must cover"):
        DeliveryPolicy(cooldown_ms={NURTURE: 40 * 24 * HOUR})
    with pytest.raises(ValueError, match="unknown default time zone"):
        DeliveryPolicy(default_timezone="Nowhere/Else")


def test_quiet_hours_within_a_day() -> None:
    lunch = QuietHours(time(12), time(14))
    assert lunch.release(at(0, 11, 59), UTC) is None
    assert lunch.release(at(0, 12), UTC) == at(0, 14)
    assert lunch.release(at(0, 14), UTC) is None


# ---------------------------------------------------------------------------
# Through the engine: hold, release, supersede, unsubscribe, priority


QUIET = DeliveryPolicy(cooldown_ms={}, daily_cap=1, quiet=QuietHours(time(21), time(8)))


def test_a_held_trigger_goes_out_when_quiet_hours_end() -> None:
    part = Partition(engine(policy=QUIET))
    part.send(ev("Signed Up", 0, 22))  # trial_stalled due day 7, 22:00: quiet
    part.advance(at(8, 12))
    assert outcomes(part.effects) == [
        ("trial_stalled", Outcome.HELD),
        ("trial_stalled", Outcome.SENT),
    ]
    held, sent = part.decisions()
    assert held.release_at == at(8, 8)
    assert sent.decided_at == at(8, 8)
    assert sent.reason == "released after quiet hours"
    (trigger,) = part.triggers()
    assert (trigger.trigger_id, trigger.fired_at) == (held.trigger_id, at(7, 22))
    assert part.states["c1"].triggers is not None
    assert part.states["c1"].triggers.held == ()


def test_a_held_trigger_is_superseded_when_the_customer_moves_on() -> None:
    part = Partition(engine(policy=QUIET))
    part.send(ev("Signed Up", 0, 22))
    part.advance(at(7, 23))
    part.send(ev("Order Completed", 8, 7))  # bought before the window opened
    part.advance(at(8, 12))
    assert outcomes(part.effects) == [
        ("trial_stalled", Outcome.HELD),
        ("trial_stalled", Outcome.SUPERSEDED),
    ]
    assert part.decisions()[1].reason == (
        "held for quiet hours, then superseded: the customer moved to stage 'acquisition' at "
        "2024-06-11T07:00:00Z, after the trigger fired"
    )
    assert part.triggers() == []
    memory = part.states["c1"].triggers
    assert memory is not None
    assert [(e.rule, e.outcome) for e in memory.decisions()] == [("trial_stalled", "superseded")]


def test_a_hold_outlives_the_stage_move_its_own_rule_made() -> None:
    part = Partition(engine(policy=QUIET))
    part.run([ev("Order Completed", 0, 9), ev("Signed In", 0, 22), ev("Subscription Renewed", 1)])
    part.advance(at(15, 9))  # inactive: due day 14 22:00 (quiet), moved to at_risk then
    assert part.moves()[-1] == ("retention", "at_risk", "inactive")
    assert outcomes(part.effects) == [("inactive", Outcome.HELD), ("inactive", Outcome.SENT)]


def test_a_held_inactive_trigger_is_superseded_by_new_activity() -> None:
    """freemium's inactive rule moves nobody and counts any event as activity."""
    part = Partition(engine("freemium", policy=QUIET))
    part.send(ev("Order Completed", 0, 22))
    part.advance(at(21, 23))  # due day 21 22:00: held until 08:00
    part.send(ev("page", 22, 7))
    part.advance(at(22, 12))
    assert outcomes(part.effects) == [("inactive", Outcome.HELD), ("inactive", Outcome.SUPERSEDED)]
    assert part.decisions()[1].reason.endswith(
        "the customer was active again at 2024-06-25T07:00:00Z"
    )


def test_release_decides_the_highest_priority_first() -> None:
    """Two triggers held overnight, a cap of one a day: churn risk beats nurture."""
    part = Partition(engine(policy=QUIET))
    part.send(ev("Signed Up", 0, 22))
    part.advance(at(7, 23))  # trial_stalled (nurture) held
    part.send(ev("Payment Failed", 7, 23, minute=30))  # churn risk, held too
    part.advance(at(8, 12))
    assert outcomes(part.effects) == [
        ("trial_stalled", Outcome.HELD),
        ("payment_failed", Outcome.HELD),
        ("payment_failed", Outcome.SENT),
        ("trial_stalled", Outcome.CAPPED),
    ]
    assert [t.rule for t in part.triggers()] == ["payment_failed"]
    memory = part.states["c1"].triggers
    assert memory is not None  # held ones are not in ``decided``, their release is
    assert [(e.rule, e.outcome) for e in memory.decisions()] == [
        ("payment_failed", "sent"),
        ("trial_stalled", "capped"),
    ]


def test_unsubscribed_customers_get_no_more_triggers() -> None:
    part = Partition(engine())
    part.run([ev("Order Completed", 0), ev("Unsubscribed", 1)])
    part.advance(at(5))
    part.send(ev("Payment Failed", 6))
    assert outcomes(part.effects) == [
        ("onboarding_stalled", Outcome.SUPPRESSED),
        ("payment_failed", Outcome.SUPPRESSED),
    ]
    assert part.states["c1"].triggers is not None
    assert part.states["c1"].triggers.unsubscribed


def test_the_customer_s_zone_comes_from_context_timezone() -> None:
    raw = {
        "type": "track",
        "event": "Signed Up",
        "userId": "c1",
        "messageId": "tz-1",
        "timestamp": "2024-06-03T12:00:00Z",
        "context": {"timezone": "Asia/Tokyo"},
    }
    event = decode(orjson.dumps(raw))
    assert event.timezone == "Asia/Tokyo"
    part = Partition(engine(policy=QUIET))
    part.send(event)
    part.advance(at(7, 13))  # trial_stalled due day 7 12:00 UTC = 21:00 Tokyo: quiet
    (held,) = part.decisions()
    assert held.outcome is Outcome.HELD
    assert held.release_at == at(7, 23)  # 08:00 Tokyo
    assert part.states["c1"].triggers is not None
    assert part.states["c1"].triggers.timezone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"timezone": "Europe/Paris"}, "Europe/Paris"),
        ({"timezone": 2}, None),
        ({"timezone": ""}, None),
        ({"timezone": "x" * 65}, None),
        ({}, None),
    ],
)
def test_ingest_carries_a_plausible_context_timezone(
    context: dict[str, Any], expected: str | None
) -> None:
    raw = {"type": "page", "userId": "c1", "timestamp": "2024-06-03T12:00:00Z", "context": context}
    assert decode(orjson.dumps(raw)).timezone == expected


def test_an_unknown_zone_from_an_event_is_not_remembered() -> None:
    eng = engine(policy=QUIET)
    event = replace(ev("Signed Up", 0), timezone="Mars/Olympus")
    state, _ = eng.apply(None, event, at(0))
    assert state.triggers is None
    state, _ = eng.apply(state, replace(ev("page", 1), timezone="Asia/Tokyo"), at(1))
    assert state.triggers is not None
    assert state.triggers.timezone == "Asia/Tokyo"
