"""Shortcuts on the per-event path give what the plain standard-library forms give."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from engine.ingest import parse_time
from engine.journey import CustomerState, StageMachine, load_preset, preset_names
from engine.journey.state import EPOCH, Move, from_ms, to_ms
from engine.messages import iso
from engine.worker.state_store import decode_state, encode_state
from tests.unit.streams import stream


def plain_iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datetimes(seed: int, count: int) -> list[datetime]:
    rng = random.Random(seed)
    out = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 1000, tzinfo=UTC),
    ]
    for _ in range(count):
        seconds = rng.uniform(-62_000_000_000, 253_000_000_000)
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=round(seconds))
        out.append(at.replace(microsecond=rng.choice([0, rng.randint(0, 999_999), 123_000])))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_iso_of_utc_times_is_the_millisecond_isoformat(seed: int) -> None:
    for at in datetimes(seed, 2000):
        assert iso(at) == plain_iso(at), repr(at)


@pytest.mark.parametrize(
    "tz",
    [
        timezone(timedelta(0)),  # the UTC singleton under another name
        timezone(timedelta(hours=2)),
        timezone(timedelta(hours=-5, minutes=-30)),
        ZoneInfo("UTC"),
        ZoneInfo("Europe/Berlin"),
        None,
    ],
)
def test_iso_of_other_zones_keeps_the_plain_form(tz: timezone | ZoneInfo | None) -> None:
    for at in datetimes(9, 200):
        if 2 <= at.year <= 9998:
            local = at.astimezone(tz) if tz is not None else at.replace(tzinfo=None)
            assert iso(local) == plain_iso(local), repr(local)


@pytest.mark.parametrize("seed", range(3))
def test_to_ms_is_the_floor_of_the_span_in_milliseconds(seed: int) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for at in datetimes(seed, 2000):
        assert to_ms(at) == (at - epoch) // timedelta(milliseconds=1), repr(at)
        assert from_ms(to_ms(at)) == at.replace(microsecond=at.microsecond // 1000 * 1000)


def journey_states() -> list[CustomerState]:
    """States of every shape: the ends of the random streams of every preset."""
    out: list[CustomerState] = []
    for preset in preset_names():
        machine = StageMachine(load_preset(preset), history_limit=5)
        states: dict[str, CustomerState] = {}
        for event, now in stream(machine.model, 11, 300):
            state, _ = machine.apply(states.get(event.customer_id), event, now)
            states[event.customer_id] = state
            out.append(state)
    return out


def reference_record(state: CustomerState) -> dict[str, Any]:
    """The version 1 record, field by field from the state."""

    def ms(at: datetime | None) -> int | None:
        return None if at is None else (at - EPOCH) // timedelta(milliseconds=1)

    return {
        "v": 1,
        "id": state.customer_id,
        "m": state.model,
        "mv": state.model_version,
        "s": state.stage,
        "se": ms(state.stage_entered_at),
        "h": [[m.from_stage, m.to_stage, ms(m.at), m.rule, m.message_id] for m in state.history],
        "vi": dict(state.visits),
        "fs": ms(state.first_seen),
        "ls": ms(state.last_seen),
        "t": dict(state.touches),
        "n": state.events,
        "ln": state.late_events,
        "ad": state.active_days_in_stage,
        "la": state.last_active_day,
        "r": [list(pair) for pair in state.recent_ids],
    }


def test_encode_state_writes_the_version_1_record() -> None:
    states = journey_states()
    assert len({len(s.history) for s in states}) > 3
    for state in states:
        record = reference_record(state)
        assert state.to_dict() == record
        assert encode_state(state) == orjson.dumps(record)
        assert decode_state(encode_state(state)) == CustomerState.from_dict(record)


def test_to_dict_is_a_copy_the_caller_may_change() -> None:
    state = journey_states()[-1]
    before = encode_state(state)
    record = state.to_dict()
    record["vi"]["x"] = 1
    record["t"].clear()
    record["r"].append([1, 2])
    record["h"].clear()
    assert encode_state(state) == before


def test_a_move_knows_its_time_in_milliseconds_without_showing_it() -> None:
    at = datetime(2024, 6, 3, 10, 0, 0, 123999, tzinfo=UTC)
    move = Move(None, "usage", at, "r", "m")
    assert move.at_ms == to_ms(at) == 1717408800123
    assert move == Move(None, "usage", at, "r", "m")
    assert "at_ms" not in repr(move)
    assert replace(move, at=EPOCH).at_ms == 0


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-02T09:00:00Z",
        "2026-03-02T09:00:00.1Z",
        "2026-03-02T09:00:00.123Z",
        "2026-03-02T09:00:00.123456Z",
        "2026-03-02T09:00:00+00:00",
        "2026-03-02T09:00:00-00:00",
        "2026-03-02T09:00:00.5+00:00",
        "2026-03-02T10:00:00+01:00",
        "2026-03-02T03:30:00.999-05:30",
        "2026-03-02T09:00:00+00:00:01",
        "2026-03-02 09:00Z",
        " 2026-03-02T09:00:00Z\n",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_parse_time_is_fromisoformat_in_utc(text: str) -> None:
    parsed = parse_time(text, "timestamp")
    plain = datetime.fromisoformat(text.strip()).astimezone(UTC)
    assert parsed == plain
    assert parsed.tzinfo is UTC
    assert parsed.isoformat() == plain.isoformat()
