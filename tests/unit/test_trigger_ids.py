"""Deterministic trigger ids: the same input gives the same ids; a replay or a
restart gives no new trigger."""

from __future__ import annotations

import json
from datetime import time

from engine.journey import (
    Cause,
    CustomerState,
    DeliveryPolicy,
    Duplicate,
    Event,
    Outcome,
    QuietHours,
    Timer,
    TimerIgnored,
    trigger_id,
)
from engine.journey.state import to_ms
from tests.unit.journeys import at, ev
from tests.unit.triggering import Partition, engine, outcomes


def journey() -> list[Event]:
    """Four customers over five weeks; every saas rule fires once."""
    return sorted(
        [
            ev("Signed Up", 0, mid="a1", customer="a"),  # trial_stalled day 7
            ev("Order Completed", 1, mid="b1", customer="b"),  # onboarding_stalled day 4
            ev("Signed In", 5, mid="b2", customer="b"),
            ev("NPS Submitted", 6, mid="b3", props={"score": 10}, customer="b"),  # promoter
            ev("NPS Submitted", 8, mid="b4", props={"score": 2}, customer="b"),  # detractor
            ev("Order Completed", 2, mid="c1", customer="c"),
            ev("Signed In", 2, 5, mid="c2", customer="c"),  # inactive day 16 05:00
            ev("Payment Failed", 20, mid="c3", customer="c"),  # payment_failed
            ev("Order Completed", 0, mid="d1", customer="d"),
            ev("Signed In", 1, mid="d2", customer="d"),
            ev("Subscription Cancelled", 3, mid="d3", customer="d"),  # churned_30d day 33
        ],
        key=lambda e: e.timestamp,
    )


def run(events: list[Event], part: Partition | None = None, until: int = 36) -> Partition:
    part = part or Partition(engine())
    part.run(events)
    part.advance(at(until))
    return part


def ids(part: Partition) -> list[tuple[str, str, str]]:
    return sorted((t.customer_id, t.rule, t.trigger_id) for t in part.triggers())


def test_the_id_is_a_digest_of_model_customer_rule_and_cause() -> None:
    by_event = trigger_id("saas", "c1", "payment_failed", Cause(message_id="m-9"))
    by_timer = trigger_id("saas", "c1", "inactive", Cause(timer_rule="inactive", timer_due=at(14)))
    # Fixed values: the derivation must not change between versions, or a replay
    # after an upgrade would send every trigger again.
    assert (by_event, by_timer) == (GOLDEN_EVENT_ID, GOLDEN_TIMER_ID)
    others = {
        trigger_id("saas", "c2", "payment_failed", Cause(message_id="m-9")),
        trigger_id("saas", "c1", "detractor", Cause(message_id="m-9")),
        trigger_id("saas", "c1", "payment_failed", Cause(message_id="m-10")),
        trigger_id("b2b", "c1", "payment_failed", Cause(message_id="m-9")),
        trigger_id("saas", "c1", "inactive", Cause(timer_rule="inactive", timer_due=at(15))),
    }
    assert len(others | {by_event, by_timer}) == 7


GOLDEN_EVENT_ID = (
    "c0ac23bc63e71d4e387ddebb185b97b6"  # blake2b-128 of "saas␟c1␟payment_failed␟event:m-9"
)
GOLDEN_TIMER_ID = "3f38760fc958e9d1addbfc71f262e894"  # ... "timer:inactive@1718582400000"


def test_the_same_input_gives_the_same_triggers_and_ids() -> None:
    first, second = run(journey()), run(journey())
    assert [(c, r) for c, r, _ in ids(first)] == [
        ("a", "trial_stalled"),
        ("b", "detractor"),
        ("b", "onboarding_stalled"),
        ("b", "promoter"),
        ("c", "inactive"),
        ("c", "payment_failed"),
        ("d", "churned_30d"),
    ]
    assert ids(first) == ids(second)
    assert [t.fired_at for t in first.triggers()] == [t.fired_at for t in second.triggers()]


def test_reprocessing_a_batch_after_a_crash_yields_no_new_trigger() -> None:
    events = journey()
    part = run(events[:8], until=6)
    batch = events[8:9]  # b's NPS 10 at day 6: the promoter trigger
    part.run(batch)
    assert part.triggers()[-1].rule == "promoter"
    part.effects.clear()
    for event in batch:  # the batch again: its offsets were not committed
        assert part.send(event) == [Duplicate(event.customer_id, event.message_id)]
    assert part.triggers() == []


def test_a_replay_weeks_later_yields_no_new_trigger() -> None:
    """Past the messageId window the stage machine applies the events again: the
    rules fire again with the same ids, and the policy drops them as duplicates."""
    part = run(journey())
    part.effects.clear()
    part.run(journey())
    part.advance(at(45))
    assert part.triggers() == []
    found = outcomes(part.effects)
    assert {o for _, o in found} == {Outcome.DUPLICATE}
    # (the promoter's NPS event finds the customer at risk now: its rule does not fire)
    assert sorted(r for r, _ in found) == ["detractor", "payment_failed"]


def test_a_restart_rebuilds_the_timers_from_the_table_and_fires_each_once() -> None:
    """Stop half-way, keep only the stored records (as the changelog would), start a
    new partition from them: the rest of the journey gives the same triggers."""
    events = journey()
    whole = run(events)

    before = Partition(engine())
    before.run([e for e in events if e.timestamp < at(10)])
    before.advance(at(10))
    stored = {cid: json.dumps(s.to_dict()) for cid, s in before.states.items()}

    after = Partition(engine())
    for cid, raw in stored.items():
        state = CustomerState.from_dict(json.loads(raw))
        after.states[cid] = state
        after.index.schedule(cid.encode(), after.engine.next_timer(state))
    after.event_time.observe(at(10))
    # A timer message sent before the stop is delivered again after it: ignored.
    again = Timer("a", "trial_stalled", to_ms(at(7)), to_ms(at(0)))
    _, effects = after.engine.apply_timer(after.states["a"], again, at(10))
    assert [e.reason for e in effects if isinstance(e, TimerIgnored)] == [
        "already fired for this due time"
    ]
    run([e for e in events if e.timestamp >= at(10)], after)
    assert sorted(ids(before) + ids(after)) == ids(whole)
    assert {r for _, r, _ in ids(before)} == {
        "trial_stalled",
        "onboarding_stalled",
        "promoter",
        "detractor",
    }


def test_held_triggers_keep_their_ids_and_each_gets_a_final_decision() -> None:
    """With quiet hours (the journey's events are at midnight) triggers are held;
    each held one is later sent with the id it would have had, or superseded
    because the customer moved on in the meantime. None is lost."""
    quiet = DeliveryPolicy(cooldown_ms={}, daily_cap=0, quiet=QuietHours(time(21), time(8)))
    loud = {i for _, _, i in ids(run(journey()))}
    held = run(journey(), Partition(engine(policy=quiet)))
    last: dict[str, Outcome] = {}
    for d in held.decisions():
        last[d.trigger_id] = d.outcome
    assert Outcome.HELD in {d.outcome for d in held.decisions()}
    assert set(last.values()) == {Outcome.SENT, Outcome.SUPERSEDED}
    assert {t.trigger_id for t in held.triggers()} == {
        i for i, o in last.items() if o is Outcome.SENT
    }
    assert set(last) <= loud
    assert all(t.trigger_id in loud for t in held.triggers())
