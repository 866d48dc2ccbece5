"""What the engine reads and writes matches the JSON Schemas in topics/."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time

import jsonschema
import orjson
import pytest

from engine.catalog import TOPICS_DIR, Catalog, load_schema
from engine.ingest import BadInput, decode
from engine.journey import (
    DeliveryPolicy,
    Effect,
    Outcome,
    PolicyDecision,
    QuietHours,
    StageMachine,
    Timer,
    TimerKind,
    TriggerEngine,
    TriggerFired,
    TriggerType,
    load_preset,
)
from engine.messages import (
    dead_letter_headers,
    decode_timer,
    dumps,
    stage_change,
    timer,
    trigger,
    trigger_decision,
)
from engine.settings import Settings
from engine.simulate import encode as sim_encode
from engine.simulate import journeys

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_every_schema_is_valid_json_schema() -> None:
    names = sorted(p.name for p in (TOPICS_DIR / "schemas").glob("*.json"))
    assert len(names) >= 5
    for name in names:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))


def test_simulated_traffic_follows_the_touchpoint_schema_and_decodes() -> None:
    validator = jsonschema.Draft202012Validator(load_schema("touchpoint.schema.json"))
    rng = random.Random(1)
    kinds = set()
    count = 0
    for at, customer, msg in journeys(200, seed=3, now=NOW):
        raw = sim_encode(at, msg, rng)
        body = orjson.loads(raw)
        validator.validate(body)
        event = decode(raw)
        assert event.customer_id == customer
        kinds.add(event.label)
        count += 1
    assert count > 1000
    assert {"page", "identify", "Signed Up", "Order Completed", "Subscription Cancelled"} <= kinds


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "track", "userId": "u", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "page", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "alias", "userId": "u", "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "nope", "userId": "u", "timestamp": "2026-01-01T00:00:00Z"},
    ],
)
def test_schema_and_decoder_agree_on_invalid_messages(msg: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(msg, load_schema("touchpoint.schema.json"))
    with pytest.raises(BadInput):
        decode(orjson.dumps(msg))


def test_stage_changes_and_dead_letter_headers_follow_their_schemas() -> None:
    machine = StageMachine(load_preset("saas"))
    raw = b'{"type":"track","event":"Order Completed","userId":"u","timestamp":"2026-03-02T09:00Z"}'
    _, effects = machine.apply(None, decode(raw), NOW)
    payload = stage_change(effects[0], NOW)  # type: ignore[arg-type]
    jsonschema.validate(payload, load_schema("stage-change.schema.json"))
    assert payload["at"] == "2026-03-02T09:00:00.000Z"

    try:
        decode(b"nope")
    except BadInput as exc:
        headers = dead_letter_headers(
            exc, topic="t", partition=2, offset=7, timestamp_ms=1, failed_at=NOW
        )
    as_object = {k: v.decode() for k, v in headers}
    jsonschema.validate(as_object, load_schema("dead-letter.schema.json"))
    assert as_object["journey.reason"] == "not_json"


def _trigger_effects() -> list[Effect]:
    """Every kind of trigger output: sent and held decisions, event and timer causes."""
    engine = TriggerEngine(
        StageMachine(load_preset("saas")),
        DeliveryPolicy(cooldown_ms={}, daily_cap=0, quiet=QuietHours(time(21), time(8))),
    )
    bought = b'{"type":"track","event":"Order Completed","userId":"%s","timestamp":"%s"}'
    nps = (
        b'{"type":"track","event":"NPS Submitted","userId":"v","messageId":"n1",'
        b'"properties":{"score":3},"timestamp":"2026-03-02T10:00Z"}'
    )
    state, out = engine.apply(None, decode(bought % (b"v", b"2026-03-02T09:00Z")), NOW)
    _, effects = engine.apply(state, decode(nps), NOW)  # detractor: sent
    out += effects
    state, _ = engine.apply(None, decode(bought % (b"u", b"2026-03-02T23:00Z")), NOW)
    timer = engine.next_timer(state)
    assert timer is not None
    _, effects = engine.apply_timer(state, timer, timer.due_at)  # onboarding_stalled: held
    out += effects
    return out


def test_triggers_decisions_and_timers_follow_their_schemas() -> None:
    effects = _trigger_effects()
    triggers = [e for e in effects if isinstance(e, TriggerFired)]
    decisions = [e for e in effects if isinstance(e, PolicyDecision)]
    assert {d.outcome for d in decisions} == {Outcome.SENT, Outcome.HELD}
    assert {t.cause.message_id is None for t in triggers} == {False}
    assert any(d.cause.timer_rule for d in decisions)
    trigger_schema = jsonschema.Draft202012Validator(load_schema("trigger.schema.json"))
    decision_schema = jsonschema.Draft202012Validator(load_schema("trigger-decision.schema.json"))
    for t in triggers:
        payload = trigger(t, NOW)
        trigger_schema.validate(payload)
        assert payload["cause"] == {"message_ids": ["n1"]}
    for d in decisions:
        payload = trigger_decision(d)
        decision_schema.validate(payload)
        if d.outcome is Outcome.HELD:
            assert payload["release_at"] is not None
            assert payload["cause"]["timer"]["rule"] == "onboarding_stalled"

    timer_schema = jsonschema.Draft202012Validator(load_schema("timer.schema.json"))
    for t in (
        Timer("u", "inactive", 1_772_442_000_123, 1_771_232_400_000),
        Timer("u", "promoter", 1_772_442_000_000, 0, TimerKind.RELEASE),
    ):
        payload = timer(t)
        timer_schema.validate(payload)
        assert decode_timer(dumps(payload)) == t

    catalog = Catalog(Settings())
    assert catalog.trigger_topic(TriggerType.CHURN_RISK) == "journey.triggers.churn-risk"
    assert {catalog.trigger_topic(k) for k in TriggerType} == {s.name for s in catalog.triggers()}
    assert catalog.name(Catalog.DECISIONS) == "journey.trigger-decisions"
    assert catalog[Catalog.DECISIONS].schema == "trigger-decision.schema.json"


@pytest.mark.parametrize(
    ("value", "reason", "match"),
    [
        (None, "not_json", "no value"),
        (b"{", "not_json", "not JSON"),
        (b"[1]", "not_object", "not a JSON object"),
        (b'{"customer_id":"u","rule":"r","kind":"rule","due_ms":1}', "missing_field", "generation"),
        (
            b'{"customer_id":"","rule":"r","kind":"rule","due_ms":1,"generation":0}',
            "bad_field",
            "non-empty",
        ),
        (
            b'{"customer_id":"u","rule":"r","kind":"later","due_ms":1,"generation":0}',
            "bad_field",
            "kind",
        ),
        (
            b'{"customer_id":"u","rule":"r","kind":"rule","due_ms":"1","generation":0}',
            "bad_field",
            "due_ms must be an integer",
        ),
        (
            b'{"customer_id":"u","rule":"r","kind":"rule","due_ms":1,"generation":true}',
            "bad_field",
            "generation must be an integer",
        ),
    ],
)
def test_a_bad_timer_record_is_bad_input(value: bytes | None, reason: str, match: str) -> None:
    with pytest.raises(BadInput, match=match) as caught:
        decode_timer(value)
    assert caught.value.reason == reason
