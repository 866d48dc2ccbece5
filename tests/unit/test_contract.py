"""What the engine reads and writes matches the JSON Schemas in topics/."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import jsonschema
import orjson
import pytest

from engine.catalog import TOPICS_DIR, load_schema
from engine.ingest import BadInput, decode
from engine.journey import StageMachine, load_preset
from engine.messages import dead_letter_headers, stage_change
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
