"""Triggers end to end on the real broker: rules, timers, the delivery policy.

The worker runs the event-time clock, so weeks of journey time pass without
sleeping (tests/integration/triggers_io.py). The wall clock is tested with a
trigger duration of seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.journey import Cause, TriggerType, trigger_id
from engine.journey.state import to_ms
from tests.integration.conftest import make_settings
from tests.integration.kafka_io import consume_until, produce
from tests.integration.segment import iso, seg
from tests.integration.triggers_io import JourneyTime, read_outputs, timer_cause
from tests.integration.worker_http import conforms, customers_gauge, get, samples, until
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def event_worker(
    kafka_bootstrap: str, module_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker on the event-time clock with the default policy and a suppression list."""
    data = tmp_path_factory.mktemp("triggers")
    listed = data / "suppressed.txt"
    listed.write_text(f"# asked support to stop\nblocked-{module_name}\n", encoding="utf-8")
    settings = make_settings(
        kafka_bootstrap, module_name, data, clock="event", suppression_list=f"@{listed}"
    )
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(settings, data / "worker.log")
    worker.start()
    yield worker
    code = worker.stop()
    assert code == 0, f"worker exited with {code} when stopped:\n{worker.log()[-3000:]}"


@pytest.fixture(scope="module")
def journey_time(event_worker: WorkerProcess, module_name: str) -> JourneyTime:
    return JourneyTime(event_worker.settings, module_name)


def tid(customer: str, rule: str, cause: Cause) -> str:
    return trigger_id("saas", customer, rule, cause)


async def test_each_default_trigger_fires_from_a_journey(
    event_worker: WorkerProcess, journey_time: JourneyTime, unique_name: str
) -> None:
    b = journey_time.stretch() + 9 * HOUR
    names = ("trial", "onboarding", "inactive", "payment", "detractor", "promoter", "churned")
    c = who = {name: f"{name}-{unique_name}" for name in names}
    pay = seg(c["payment"], "Payment Failed", b + 2 * DAY)
    nps_low = seg(c["detractor"], "NPS Submitted", b + 2 * DAY, props={"score": 3})
    nps_high = seg(c["promoter"], "NPS Submitted", b + 2 * DAY, props={"score": 10})
    journeys = [
        seg(c["trial"], "Signed Up", b),
        seg(c["trial"], "page", b + DAY),
        seg(c["onboarding"], "Signed Up", b),
        seg(c["onboarding"], "Order Completed", b + DAY),
        seg(c["inactive"], "Order Completed", b),
        seg(c["inactive"], "Signed In", b + DAY),
        seg(c["inactive"], "Feature Used", b + 2 * DAY),
        pay,
        nps_low,
        nps_high,
        seg(c["churned"], "Subscription Cancelled", b + 2 * DAY),
    ]
    for name in ("payment", "detractor", "promoter", "churned"):
        journeys += [seg(c[name], "Order Completed", b), seg(c[name], "Signed In", b + DAY)]
    await journey_time.publish(journeys)
    # The event rules fire at once, the time rules only once journey time passes.
    first = await read_outputs(
        event_worker.settings, who.values(), lambda o: len(o.triggers) >= 3, settle=1.0
    )
    assert sorted(first.rules()) == ["detractor", "payment_failed", "promoter"]

    await journey_time.advance(b + 40 * DAY + 3 * HOUR)
    expected = {
        "trial": ["trial_stalled"],
        "onboarding": ["onboarding_stalled", "inactive"],  # bought and never used it
        "inactive": ["inactive"],
        "payment": ["payment_failed"],
        "detractor": ["detractor"],
        "promoter": ["promoter", "inactive"],  # advocates must stay active too
        "churned": ["churned_30d"],
    }
    out = await read_outputs(
        event_worker.settings,
        who.values(),
        lambda o: len(o.triggers) >= sum(map(len, expected.values())),
        settle=1.5,
    )
    for name, rules in expected.items():
        mine = out.of(c[name])
        assert mine.rules() == rules, (name, mine.triggers)
        assert [d["outcome"] for d in mine.decisions] == ["sent"] * len(rules), mine.decisions
        assert [d["trigger_id"] for d in mine.decisions] == [t["trigger_id"] for t in mine.triggers]

    def trigger(name: str, rule: str) -> dict[str, object]:
        [found] = [t for t in out.of(c[name]).triggers if t["rule"] == rule]
        return found

    due = {
        ("trial", "trial_stalled"): b + 7 * DAY,
        ("onboarding", "onboarding_stalled"): b + 4 * DAY,  # 3 days without activity
        ("inactive", "inactive"): b + 16 * DAY,  # 14 days after the last activity
        ("churned", "churned_30d"): b + 32 * DAY,
    }
    for (name, rule), at in due.items():
        t = trigger(name, rule)
        assert t["cause"] == timer_cause(rule, at)
        assert t["fired_at"] == iso(at)
        assert t["trigger_id"] == tid(c[name], rule, Cause(timer_rule=rule, timer_due=at))
    for name, rule, msg in (
        ("payment", "payment_failed", pay),
        ("detractor", "detractor", nps_low),
        ("promoter", "promoter", nps_high),
    ):
        t = trigger(name, rule)
        assert t["cause"] == {"message_ids": [msg["messageId"]]}
        assert t["trigger_id"] == tid(c[name], rule, Cause(message_id=msg["messageId"]))
    assert [(t["type"], t["priority"]) for t in out.of(c["payment"]).triggers] == [
        ("churn-risk", 95)
    ]
    assert trigger("promoter", "promoter")["type"] == "advocacy-ask"
    assert trigger("trial", "trial_stalled")["type"] == "nurture"
    assert trigger("churned", "churned_30d")["type"] == "win-back"
    assert (
        trigger("churned", "churned_30d")["stage"],
        trigger("trial", "trial_stalled")["stage"],
    ) == (
        "churned",
        "evaluation",
    )
    # The inactive rule moves the customer to at_risk, recorded like any stage change.
    [moved] = [ch for ch in out.of(c["inactive"]).changes if ch["to_stage"] == "at_risk"]
    assert (moved["from_stage"], moved["at"]) == ("onboarding", iso(b + 16 * DAY))
    assert moved["cause"] == {
        "rule": "inactive",
        "event": "timer",
        "message_id": f"timer:inactive@{to_ms(b + 16 * DAY)}",
    }
    assert trigger("inactive", "inactive")["stage"] == "at_risk"


async def test_replayed_input_gives_duplicate_decisions_and_no_new_trigger(
    event_worker: WorkerProcess, journey_time: JourneyTime, unique_name: str
) -> None:
    b = journey_time.stretch() + 9 * HOUR
    who = f"replay-{unique_name}"
    journey = [
        seg(who, "Order Completed", b),
        seg(who, "Signed In", b + DAY),
        seg(who, "Payment Failed", b + 2 * DAY),
        seg(who, "NPS Submitted", b + 3 * DAY + HOUR, props={"score": 2}),
    ]
    await journey_time.publish(journey)
    first = await read_outputs(
        event_worker.settings, [who], lambda o: len(o.triggers) >= 2, settle=1.0
    )
    assert first.of(who).rules() == ["payment_failed", "detractor"]
    ids = {t["trigger_id"] for t in first.triggers}

    # Past the messageId dedupe window (24 h of the partition's clock), the same
    # input is applied again: the same triggers, with the same ids, are duplicates.
    await journey_time.advance(b + 6 * DAY)
    await journey_time.publish(journey)
    out = await read_outputs(
        event_worker.settings, [who], lambda o: len(o.decisions) >= 4, settle=2.0
    )
    assert out.of(who).triggers == first.of(who).triggers
    replayed = out.decisions[2:]
    assert [(d["rule"], d["outcome"]) for d in replayed] == [
        ("payment_failed", "duplicate"),
        ("detractor", "duplicate"),
    ]
    assert {d["trigger_id"] for d in replayed} == ids
    assert all(d["reason"].startswith("trigger already decided at") for d in replayed)


async def test_a_customer_who_comes_back_is_not_nudged(
    event_worker: WorkerProcess, journey_time: JourneyTime, unique_name: str
) -> None:
    b = journey_time.stretch() + 9 * HOUR
    active, returning = f"active-{unique_name}", f"back-{unique_name}"
    await journey_time.publish(
        [
            seg(active, "Order Completed", b),
            seg(active, "Signed In", b + DAY),  # inactive timer: due day 15 ...
            seg(active, "Signed In", b + 10 * DAY),  # ... now due day 24
            seg(returning, "Order Completed", b),
            seg(returning, "Subscription Cancelled", b + DAY),  # win-back due day 31
            seg(returning, "Subscription Started", b + 10 * DAY),  # bought again
            seg(returning, "Signed In", b + 11 * DAY),
            seg(returning, "Signed In", b + 22 * DAY),
            seg(returning, "Signed In", b + 33 * DAY),
        ]
    )
    await journey_time.advance(b + 20 * DAY)
    await journey_time.advance(b + 40 * DAY)
    out = await read_outputs(
        event_worker.settings,
        [active, returning],
        lambda o: len(o.of(active).triggers) >= 1,
        settle=1.5,
    )
    [inactive] = out.of(active).triggers
    assert inactive["cause"] == timer_cause("inactive", b + 24 * DAY)
    assert out.of(returning).triggers == []  # no win-back, no churn risk: they came back
    assert out.of(returning).decisions == []


async def test_held_capped_and_suppressed_decisions_are_recorded_with_their_reason(
    event_worker: WorkerProcess, journey_time: JourneyTime, unique_name: str, module_name: str
) -> None:
    b = journey_time.stretch() + 9 * HOUR
    night, capped, unsub, blocked, cool = (
        f"night-{unique_name}",
        f"capped-{unique_name}",
        f"unsub-{unique_name}",
        f"blocked-{module_name}",  # on the worker's suppression list
        f"cool-{unique_name}",
    )
    await journey_time.publish(
        [
            seg(night, "Order Completed", b),
            seg(night, "Payment Failed", b + DAY + 13 * HOUR),  # 22:00 UTC: quiet hours
            seg(capped, "Signed Up", b),  # trial_stalled due day 7, 09:00
            seg(capped, "Payment Failed", b + 7 * DAY + HOUR),  # nurture, then churn risk
            seg(capped, "NPS Submitted", b + 7 * DAY + 2 * HOUR, props={"score": 10}),
            seg(unsub, "Order Completed", b),
            seg(unsub, "Unsubscribed", b + DAY),
            seg(unsub, "Payment Failed", b + 2 * DAY),
            seg(blocked, "Order Completed", b),
            seg(blocked, "Payment Failed", b + DAY),
            seg(cool, "Order Completed", b),
            seg(cool, "Payment Failed", b + DAY),
            seg(cool, "NPS Submitted", b + DAY + HOUR, props={"score": 1}),
        ]
    )
    customers = [night, capped, unsub, blocked, cool]
    await journey_time.advance(b + 8 * DAY)  # the held trigger's window opened on day 2
    out = await read_outputs(
        event_worker.settings, customers, lambda o: len(o.decisions) >= 9, settle=1.5
    )

    def decided(who: str) -> list[tuple[str, str]]:
        return [(d["rule"], d["outcome"]) for d in out.of(who).decisions]

    assert decided(night) == [("payment_failed", "held"), ("payment_failed", "sent")]
    held, released = out.of(night).decisions
    assert held["release_at"] == iso(b + 2 * DAY - HOUR)  # 08:00 UTC the next morning
    assert (
        held["reason"] == f"quiet hours 21:00-08:00 in UTC; held until {held['release_at'][:19]}Z"
    )
    assert released["reason"] == "released after quiet hours"
    assert released["trigger_id"] == held["trigger_id"]
    [sent] = out.of(night).triggers
    assert sent["trigger_id"] == held["trigger_id"]
    assert sent["fired_at"] == iso(b + DAY + 13 * HOUR)

    assert decided(capped) == [
        ("trial_stalled", "sent"),
        ("payment_failed", "sent"),
        ("promoter", "capped"),
    ]
    assert out.of(capped).decisions[2]["reason"] == (
        "2 triggers of priority 20 or more went out in the last 24 h (cap 2)"
    )
    assert out.of(capped).rules() == ["trial_stalled", "payment_failed"]

    assert decided(unsub) == [("payment_failed", "suppressed")]
    assert out.of(unsub).decisions[0]["reason"] == "customer unsubscribed (Unsubscribed event)"
    assert decided(blocked) == [("payment_failed", "suppressed")]
    assert out.of(blocked).decisions[0]["reason"] == "customer is on the suppression list"
    assert decided(cool) == [("payment_failed", "sent"), ("detractor", "cooldown")]
    assert "cooldown 1d lasts until" in out.of(cool).decisions[1]["reason"]
    for who in (unsub, blocked):
        assert out.of(who).triggers == []

    # The API explains why from the customer's state: the decisions it remembers
    # (newest first, held ones are not), matching the records on the decision topic.
    async def explained(who: str, count: int) -> dict[str, Any] | None:
        answer = await get(event_worker, f"/customers/{who}/explain")
        if answer.status != 200 or len(answer.json()["policy_decisions"]) < count:
            return None
        doc: dict[str, Any] = answer.json()
        conforms(doc, "Explain")
        return doc

    def remembered(who: str) -> list[dict[str, Any]]:
        return [
            {
                "decided_at": d["decided_at"][:19] + "Z",
                "trigger_id_prefix": d["trigger_id"][:10],
                "type": d["type"],
                "priority": d["priority"],
                "rule": d["rule"],
                "outcome": d["outcome"],
            }
            for d in reversed(out.of(who).decisions)
            if d["outcome"] != "held"
        ]

    doc = await until(lambda: explained(capped, 3))
    assert doc["policy_decisions"] == remembered(capped)
    assert [(d["rule"], d["outcome"]) for d in doc["policy_decisions"]] == [
        ("promoter", "capped"),
        ("payment_failed", "sent"),
        ("trial_stalled", "sent"),
    ]
    assert [(t["rule"], t["status"], t["trigger_id_prefix"]) for t in doc["triggers"]] == [
        (t["rule"], "sent", t["trigger_id"][:10]) for t in reversed(out.of(capped).triggers)
    ]
    doc = await until(lambda: explained(night, 1))
    assert doc["policy_decisions"] == remembered(night)
    assert [(d["rule"], d["outcome"]) for d in doc["policy_decisions"]] == [
        ("payment_failed", "sent")
    ]
    assert [(t["status"], t["sent_at"]) for t in doc["triggers"]] == [
        ("sent", released["decided_at"][:19] + "Z")
    ]
    doc = await until(lambda: explained(unsub, 1))
    assert [(d["rule"], d["outcome"]) for d in doc["policy_decisions"]] == [
        ("payment_failed", "suppressed")
    ]
    assert doc["triggers"] == []


async def test_an_unusable_timer_record_is_set_aside_and_timers_go_on(
    event_worker: WorkerProcess, journey_time: JourneyTime, unique_name: str
) -> None:
    settings = event_worker.settings
    catalog = Catalog(settings)
    key = f"odd-{unique_name}".encode()
    elsewhere = {"customer_id": "someone-else", "rule": "trial_stalled", "kind": "rule",
                 "due_ms": 1, "generation": 0}  # fmt: skip
    await produce(
        settings.kafka_bootstrap,
        catalog.name(Catalog.TIMERS),
        [(key, b"{not json", None), (key, orjson.dumps(elsewhere), None)],
    )
    dead = await consume_until(
        settings.kafka_bootstrap,
        [catalog.name(Catalog.DEAD_LETTER)],
        lambda rs: sum(r.key == key for r in rs) >= 2,
    )
    mine = [r for r in dead if r.key == key]
    assert [r.headers["journey.reason"] for r in mine] == [b"not_json", b"bad_field"]
    assert b"is not its customer_id" in mine[1].headers["journey.error"]
    timers_topic = catalog.name(Catalog.TIMERS).encode()
    assert all(r.headers["journey.original.topic"] == timers_topic for r in mine)

    b = journey_time.stretch() + 9 * HOUR
    who = f"after-odd-{unique_name}"
    await journey_time.publish([seg(who, "Signed Up", b)])
    await journey_time.advance(b + 8 * DAY)
    out = await read_outputs(settings, [who], lambda o: len(o.triggers) >= 1)
    assert out.of(who).rules() == ["trial_stalled"]


async def test_timers_survive_a_restart_and_fire_once(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path, clock="event")
    await create_topics(settings)
    journey_time = JourneyTime(settings, unique_name)
    b = journey_time.stretch() + 9 * HOUR
    early, late = f"early-{unique_name}", f"late-{unique_name}"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await journey_time.publish(
            [seg(early, "Signed Up", b), seg(late, "Signed Up", b + 5 * DAY)]
        )
        await journey_time.advance(b + 8 * DAY)  # early's trial_stalled (day 7) fires
        first = await read_outputs(settings, [early, late], lambda o: len(o.triggers) >= 1)
        assert [(t["customer_id"], t["rule"]) for t in first.triggers] == [(early, "trial_stalled")]
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    # A new process: nothing in memory, the index is rebuilt from the table.
    worker.start()
    try:
        rebuilt = re.search(
            r"timer index rebuilt for partitions \[0, 1\]: (\d+) pending", worker.log()
        )
        deadline = time.monotonic() + 30
        while rebuilt is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            rebuilt = re.search(
                r"timer index rebuilt for partitions \[0, 1\]: (\d+) pending", worker.log()
            )
        assert rebuilt is not None, worker.log()[-3000:]
        assert int(rebuilt.group(1)) == 1  # late's; early's already fired
        await journey_time.advance(b + 13 * DAY)
        out = await read_outputs(
            settings, [early, late], lambda o: len(o.triggers) >= 2, settle=2.0
        )
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert sorted((t["customer_id"], t["rule"], t["fired_at"]) for t in out.triggers) == [
        (early, "trial_stalled", iso(b + 7 * DAY)),
        (late, "trial_stalled", iso(b + 12 * DAY)),
    ]
    assert [d["outcome"] for d in out.decisions] == ["sent", "sent"]


async def test_a_timer_fires_within_a_second_of_its_due_time_on_the_wall_clock(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(
        kafka_bootstrap,
        unique_name,
        tmp_path,
        trigger_durations="trial_stalled=2s",
        quiet_hours="off",
    )
    await create_topics(settings)
    catalog = Catalog(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    consumer = AIOKafkaConsumer(
        catalog.trigger_topic(TriggerType.NURTURE),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    lags: list[float] = []
    try:
        customers = [f"wall{n}-{unique_name}" for n in range(10)]
        signups = []
        for who in customers:
            signups.append(seg(who, "Signed Up", datetime.now(UTC)))
            await asyncio.sleep(0.1)
        await JourneyTime(settings, unique_name).publish(signups)
        deadline = time.monotonic() + 30
        while len(lags) < len(customers) and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=50)).values():
                received = datetime.now(UTC)
                for m in messages:
                    trigger = orjson.loads(m.value or b"{}")
                    due = datetime.fromisoformat(trigger["cause"]["timer"]["due_at"])
                    lags.append((received - due).total_seconds())
    finally:
        await consumer.stop()
        assert worker.stop() == 0, worker.log()[-3000:]
    assert len(lags) == len(customers), lags
    print(f"wall-clock timer lag, due to trigger received: {sorted(lags)}")
    assert all(0 <= lag < 1.0 for lag in lags), lags


async def test_a_timer_moves_a_customer_without_a_timer_message_and_the_gauge_follows(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    """The inactive rule moves a paying customer to at_risk: applied by the worker
    itself (nothing on the timers topic), and the per-stage gauge and the funnel
    count the move as they count a touchpoint's."""
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path, clock="event")
    await create_topics(settings)
    journey_time = JourneyTime(settings, unique_name)
    b = journey_time.stretch() + 9 * HOUR
    idle = f"idle-{unique_name}"
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await journey_time.publish([seg(idle, "Order Completed", b)])
        await journey_time.advance(b + 15 * DAY)  # 14 days without activity
        out = await read_outputs(
            settings, [idle], lambda o: len(o.changes) >= 2 and "inactive" in o.rules()
        )
        assert [(c["from_stage"], c["to_stage"]) for c in out.of(idle).changes] == [
            (None, "acquisition"),
            ("acquisition", "at_risk"),
        ]
        assert out.of(idle).rules() == ["onboarding_stalled", "inactive"]

        clocks = len(journey_time.clock_customers)  # their page views: discovery

        async def gauge() -> dict[str, int] | None:
            found = customers_gauge(await samples(worker))
            return found if found == {"at_risk": 1, "discovery": clocks} else None

        await until(gauge)
        funnel = (await get(worker, "/funnel")).json()["models"]["saas"]
        assert funnel["changes"] == 2 + clocks
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        catalog = Catalog(settings)
        topic = catalog.name(Catalog.TIMERS)
        tps = [TopicPartition(topic, p) for p in range(catalog[Catalog.TIMERS].partitions)]
        assert tps
        assert set((await consumer.end_offsets(tps)).values()) == {0}
    finally:
        await consumer.stop()
