"""The worker's side of triggers without Kafka: effects to records, the processor
with the trigger engine, per-partition timer indexes and clocks, the rebuild.

The same pieces run against the real broker in tests/integration/test_triggers.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest
from mode import Service
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog, load_schema
from engine.clock import ManualClock
from engine.journey import (
    CustomerState,
    DeliveryPolicy,
    Event,
    EventType,
    PartitionClocks,
    StageMachine,
    Timer,
    TimerIgnored,
    TimerKind,
    TriggerEngine,
    load_preset,
)
from engine.journey.state import to_ms
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.effects import IGNORED_REASONS, EffectRouter, ignored_reason
from engine.worker.processor import Outgoing, Processor, Record
from engine.worker.state_store import UnreadableState, encode_state
from engine.worker.timers import FIRE_BATCH, PartitionTimers, TimerService

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday, 09:00 UTC
DAY = timedelta(days=1)
CAT = Catalog(Settings().with_(topic_prefix="p.", touchpoints_topic="p.in"))
TRIGGER_SCHEMA = load_schema("trigger.schema.json")
DECISION_SCHEMA = load_schema("trigger-decision.schema.json")
STAGE_SCHEMA = load_schema("stage-change.schema.json")


def engine(policy: DeliveryPolicy | None = None) -> TriggerEngine:
    return TriggerEngine(StageMachine(load_preset("saas")), policy or DeliveryPolicy())


def event(name: str, when: datetime, who: str = "u1", **props: object) -> Event:
    return Event(
        f"{who}-{name}-{when.isoformat()}", who, EventType.TRACK, when, name, "server", props
    )


def seg(name: str, when: datetime, who: str = "u1", **props: object) -> bytes:
    return orjson.dumps(
        {"type": "track", "event": name, "userId": who, "properties": props,
         "messageId": f"{who}-{name}-{when.isoformat()}",
         "timestamp": when.isoformat().replace("+00:00", "Z")}
    )  # fmt: skip


def rec(value: bytes, who: str = "u1", partition: int = 1, offset: int = 0) -> Record:
    return Record("p.in", partition, offset, who.encode(), value, [])


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def state_after(eng: TriggerEngine, *events: Event) -> CustomerState:
    state: CustomerState | None = None
    for e in events:
        state, _ = eng.apply(state, e, e.timestamp)
    assert state is not None
    return state


# ---------------------------------------------------------------- ignored timers


def test_every_reason_the_core_gives_for_an_ignored_timer_has_its_own_label() -> None:
    eng = engine(DeliveryPolicy.permissive())
    trial = state_after(eng, event("Signed Up", T0))  # evaluation: trial_stalled due T0 + 7d
    due = to_ms(T0 + 7 * DAY)
    timer = Timer("u1", "trial_stalled", due, to_ms(T0))
    fired, _ = eng.apply_timer(trial, timer, T0 + 8 * DAY)
    bought = state_after(eng, event("Signed Up", T0), event("Order Completed", T0 + DAY))
    used = state_after(
        eng,
        event("Order Completed", T0),
        event("Signed In", T0 + DAY),
        event("Signed In", T0 + 2 * DAY),
    )
    inactive_due = to_ms(T0 + 15 * DAY)
    cases = {
        "already_fired": (fired, timer),
        "superseded": (used, Timer("u1", "inactive", inactive_due, to_ms(T0 + DAY))),
        "rescheduled": (trial, Timer("u1", "trial_stalled", due + 1, to_ms(T0))),
        "left_stage": (bought, timer),
        "not_due": (trial, Timer("u1", "trial_stalled", to_ms(T0 + 30 * DAY), to_ms(T0))),
        "no_customer": (None, timer),
        "no_rule": (trial, Timer("u1", "no_such_rule", due, to_ms(T0))),
        "nothing_held": (trial, Timer("u1", "trial_stalled", due, 0, TimerKind.RELEASE)),
    }
    assert set(cases) == {label for _, label in IGNORED_REASONS}
    for label, (state, t) in cases.items():
        _, effects = eng.apply_timer(state, t, T0 + 20 * DAY)
        [ignored] = effects
        assert isinstance(ignored, TimerIgnored)
        assert ignored_reason(ignored.reason) == label, (label, ignored.reason)
    assert ignored_reason("something new") == "other"


# ---------------------------------------------------------------- processor


def make_processor(
    eng: TriggerEngine, clocks: PartitionClocks | None = None
) -> tuple[Processor, dict[bytes, CustomerState], Metrics]:
    table: dict[bytes, CustomerState] = {}
    metrics = Metrics(CollectorRegistry(), process=False)
    processor = Processor(
        machine=eng,
        states=table,
        catalog=CAT,
        clock=ManualClock(T0 + 30 * DAY),
        metrics=metrics,
        max_message_bytes=4096,
        effects=EffectRouter(CAT, metrics),
        event_time=clocks,
    )
    return processor, table, metrics


def run(
    processor: Processor, table: dict[bytes, CustomerState], *records: Record
) -> list[Outgoing]:
    result = processor.process(list(records))
    table.update({k: s for k, (s, _) in result.changed.items()})
    return result.outgoing


def test_a_payment_failure_sends_its_stage_change_decision_and_trigger() -> None:
    processor, table, metrics = make_processor(engine())
    run(processor, table, rec(seg("Order Completed", T0)), rec(seg("Signed In", T0 + DAY)))
    out = run(processor, table, rec(seg("Payment Failed", T0 + 2 * DAY, plan="pro")))
    assert [o.topic for o in out] == [
        "p.journey.stage-changes",
        "p.journey.trigger-decisions",
        "p.journey.triggers.churn-risk",
    ]
    assert all(o.key == b"u1" for o in out)
    change, decision, trigger = (orjson.loads(o.value or b"") for o in out)
    jsonschema.validate(change, STAGE_SCHEMA)
    jsonschema.validate(decision, DECISION_SCHEMA)
    jsonschema.validate(trigger, TRIGGER_SCHEMA)
    assert (change["to_stage"], change["cause"]["rule"]) == ("at_risk", "payment_failed")
    assert (decision["outcome"], decision["rule"]) == ("sent", "payment_failed")
    assert decision["trigger_id"] == trigger["trigger_id"]
    assert trigger["cause"] == {"message_ids": [f"u1-Payment Failed-{(T0 + 2 * DAY).isoformat()}"]}
    assert (trigger["type"], trigger["stage"], trigger["priority"]) == ("churn-risk", "at_risk", 95)
    assert trigger["processed_at"] == "2026-04-01T09:00:00.000Z"  # the wall clock given
    assert sample(metrics, "journey_triggers_total", trigger="churn-risk", decision="sent") == 1


def test_event_time_is_the_partitions_newest_event_and_quiet_hours_hold() -> None:
    clocks = PartitionClocks()
    processor, table, metrics = make_processor(engine(), clocks)
    late_evening = T0 + 2 * DAY + timedelta(hours=13)  # 22:00 UTC
    run(
        processor,
        table,
        rec(seg("Order Completed", T0)),
        rec(seg("Payment Failed", late_evening)),
        rec(seg("page", T0 + DAY, who="other"), who="other", partition=0),
    )
    assert clocks.now(1) == late_evening
    assert clocks.now(0) == T0 + DAY
    decisions = [
        orjson.loads(o.value or b"")
        for o in processor.process(
            [rec(seg("NPS Submitted", late_evening, score=2), offset=3)]
        ).outgoing
        if o.topic == "p.journey.trigger-decisions"
    ]
    [held] = decisions
    assert held["outcome"] == "held"
    assert held["decided_at"] == "2026-03-04T22:00:00.000Z"
    assert held["release_at"] == "2026-03-05T08:00:00.000Z"
    assert "quiet hours 21:00-08:00 in UTC" in held["reason"]
    assert sample(metrics, "journey_triggers_total", trigger="churn-risk", decision="held") == 2


# ---------------------------------------------------------------- timer indexes


def test_changed_customers_are_scheduled_and_fire_by_their_partitions_clock() -> None:
    eng = engine()
    timers = PartitionTimers(eng, 2, ManualClock(T0), event_time=True)
    timers.assign([0, 1])
    assert timers.clocks is not None
    a = state_after(eng, event("Signed Up", T0, "a"))  # due T0 + 7d
    b = state_after(eng, event("Signed Up", T0 + DAY, "b"))  # due T0 + 8d
    timers.schedule_changed(1, {b"a": (a, 0), b"b": (b, 1)})
    timers.schedule(5, b"c", a)  # a partition this worker does not own: nothing
    assert timers.pending() == 2
    assert timers.pop_due() == []
    timers.clocks.observe(1, T0 + 7 * DAY)
    timers.clocks.observe(0, T0 + 30 * DAY)  # another partition's clock changes nothing
    [(partition, key, timer)] = timers.pop_due()
    assert (partition, key, timer.rule, timer.due_ms) == (
        1,
        b"a",
        "trial_stalled",
        to_ms(T0 + 7 * DAY),
    )
    assert timers.pending() == 1
    timers.revoke([1])
    assert timers.pending() == 0
    assert timers.clocks.now(1) < T0  # forgotten: back to the start of time


def test_a_new_event_supersedes_the_pending_timer() -> None:
    eng = engine()
    timers = PartitionTimers(eng, 1, ManualClock(T0), event_time=False)
    timers.assign([0])
    trial = state_after(eng, event("Signed Up", T0))
    timers.schedule(0, b"u1", trial)
    bought = state_after(eng, event("Signed Up", T0), event("Order Completed", T0 + 2 * DAY))
    timers.schedule(0, b"u1", bought)  # onboarding_stalled due T0 + 5d now
    timers.clock = ManualClock(T0 + 7 * DAY)
    [(_, _, timer)] = timers.pop_due()
    assert (timer.rule, timer.due_ms) == ("onboarding_stalled", to_ms(T0 + 5 * DAY))


async def test_rebuild_fills_the_indexes_of_the_partitions_from_the_table() -> None:
    eng = engine()
    timers = PartitionTimers(eng, 2, ManualClock(T0), event_time=True)
    assert timers.clocks is not None
    table: dict[bytes, bytes] = {}
    mine = []
    for n in range(40):
        who = f"c{n}"
        state = state_after(eng, event("Signed Up", T0 + n * timedelta(hours=1), who))
        if n % 4 == 0:  # a visitor: no timer
            state = state_after(eng, Event(f"p{n}", who, EventType.PAGE, T0, None))
        table[who.encode()] = encode_state(state)
        if timers.partition_of(who.encode()) == 1:
            mine.append((n, who))
    timers.assign([1])
    stats = await timers.rebuild({1}, table)
    assert (stats.partitions, stats.keys) == ((1,), 40)
    assert stats.customers == len(mine)
    assert stats.pending == len([n for n, _ in mine if n % 4]) == timers.pending()
    assert 0 not in timers.indexes
    newest = max(T0 + n * timedelta(hours=1) for n, _ in mine if n % 4)
    assert timers.clocks.now(1) >= newest
    index = timers.indexes[1]
    for n, who in mine:
        pending = index.get(who.encode())
        if n % 4:
            assert pending is not None
            assert pending.due_ms == to_ms(T0 + n * timedelta(hours=1) + 7 * DAY)
        else:
            assert pending is None


async def test_rebuild_stops_at_a_record_it_cannot_read() -> None:
    timers = PartitionTimers(engine(), 1, ManualClock(T0), event_time=False)
    with pytest.raises(UnreadableState, match="unsupported state record version 99"):
        await timers.rebuild({0}, {b"someone": b'{"v": 99}'})


def _signed_up(eng: TriggerEngine, now: datetime, customers: int) -> PartitionTimers:
    """One partition's timers at ``now``: ``customers`` sign-ups at ``T0`` (c0, c1, ...)."""
    timers = PartitionTimers(eng, 1, ManualClock(now), event_time=False)
    timers.assign([0])
    for n in range(customers):
        timers.schedule(0, f"c{n}".encode(), state_after(eng, event("Signed Up", T0, f"c{n}")))
    return timers


async def test_the_service_sends_what_is_due_and_counts_it() -> None:
    eng = engine()
    timers = _signed_up(eng, T0 + 7 * DAY + timedelta(seconds=2), 3)
    timers.schedule(0, b"later", state_after(eng, event("Signed Up", T0 + DAY, "later")))
    sent: list[list[tuple[int, bytes, Timer]]] = []

    async def fire(due: list[tuple[int, bytes, Timer]]) -> None:
        sent.append(due)

    metrics = Metrics(CollectorRegistry(), process=False)
    service = TimerService(timers, fire, metrics, 0.25)
    assert await service.fire_due() == 3
    assert sorted(key for _, key, _ in sent[0]) == [b"c0", b"c1", b"c2"]
    assert sample(metrics, "journey_timers_fired_total", kind="rule") == 3
    assert sample(metrics, "journey_timer_fire_lag_seconds_count") == 3
    assert sample(metrics, "journey_timer_fire_lag_seconds_sum") == pytest.approx(6.0)
    assert sample(metrics, "journey_timers_pending") == 1
    assert await service.fire_due() == 0


async def test_while_the_input_is_behind_a_tick_fires_one_slice() -> None:
    timers = _signed_up(engine(), T0 + 8 * DAY, FIRE_BATCH * 2 + 10)
    sent: list[int] = []

    async def fire(due: list[tuple[int, bytes, Timer]]) -> None:
        sent.append(len(due))

    behind = True
    metrics = Metrics(CollectorRegistry(), process=False)
    service = TimerService(timers, fire, metrics, 0.25, behind=lambda: behind)
    assert await service.fire_due() == FIRE_BATCH
    assert await service.fire_due() == FIRE_BATCH
    behind = False  # the input caught up: everything still due goes at once
    assert await service.fire_due() == 10
    assert sent == [FIRE_BATCH, FIRE_BATCH, 10]
    assert sample(metrics, "journey_timers_pending") == 0


class _RecordingSink(Service):
    """Stands in for the Kafka sink: records when it starts and stops."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.events = log

    async def on_start(self) -> None:
        self.events.append("sink started")

    async def on_stop(self) -> None:
        self.events.append("sink stopped")


async def test_stopping_waits_for_the_send_in_flight_before_the_sink_stops() -> None:
    eng = engine()
    timers = _signed_up(eng, T0 + 7 * DAY + timedelta(seconds=2), 3)
    log: list[str] = []
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def fire(due: list[tuple[int, bytes, Timer]]) -> None:
        log.append(f"send {len(due)}")
        in_flight.set()
        await release.wait()
        log.append("acknowledged")

    metrics = Metrics(CollectorRegistry(), process=False)
    service = TimerService(timers, fire, metrics, 0.01, _RecordingSink(log))
    await service.start()
    assert log == ["sink started"]  # before the first tick
    await asyncio.wait_for(in_flight.wait(), 5)
    stopping = asyncio.ensure_future(service.stop())
    await asyncio.sleep(0.05)
    assert log == ["sink started", "send 3"]  # the sink waits for the send
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert log == ["sink started", "send 3", "acknowledged", "sink stopped"]
    # Due again after the stop: nothing more is sent.
    timers.schedule(0, b"late", state_after(eng, event("Signed Up", T0, "late")))
    assert await service.fire_due() == 0
    assert timers.pending() == 1
