"""The decoder against its plain oracle (reference_ingest.py) on random records.

Every field of a Segment message is drawn from good values and from the bad ones
each check exists for; headers are absent, empty, CloudEvents (whole or partial)
or a mapping. Both decoders must return equal events, or raise BadInput with the
same reason and the same message.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC
from typing import Any

import orjson
import pytest

from engine.ingest import REASONS, BadInput, decode
from tests.unit.reference_ingest import reference_decode

_ABSENT = object()

IDS: list[Any] = ["u-1", "x" * 512, 42, _ABSENT, None, "", "x" * 513, 1.5, True, {"a": 1}, [1]]
TIMES: list[Any] = [
    "2026-03-02T09:00:00Z",
    "2026-03-02T09:00:00.123Z",
    "2026-03-02T09:00:00.123456+00:00",
    "2026-03-02T10:00:00+01:00",
    "2026-03-02T03:30:00-05:30",
    "2026-03-02T09:00Z",
    "2026-03-02 09:00:00Z",
    "  2026-03-02T09:00:00Z ",
    _ABSENT,
    None,
    "",
    "2026-03-02T09:00:00",
    "2026-03-02",
    "20260302T090000Z",
    "2026-03-02T09:00:00+00:00:30",
    "yesterday",
    1700000000,
    ["2026-03-02T09:00:00Z"],
]
TYPES: list[Any] = [
    _ABSENT,
    "track",
    "track",
    "page",
    "screen",
    "identify",
    "group",
    "alias",
    "teleport",
    "Track",
    3,
    None,
    ["track"],
]
NAMES: list[Any] = ["Signed Up", " Signed Up ", "/pricing", _ABSENT, None, "", "  ", "x" * 513, 7]
CHANNELS: list[Any] = [_ABSENT, None, "", "web", "c" * 40, 5]
OBJECTS: list[Any] = [_ABSENT, None, {}, {"a": 1}, {"score": 9}, [1], "x"]
CONTEXTS: list[Any] = [
    _ABSENT,
    None,
    {},
    {"channel": "mobile"},
    {"traits": {"plan": "pro"}},
    {"channel": 3, "traits": []},
    {"timezone": "Europe/Paris"},
    {"timezone": 7},
    {"timezone": "x" * 65},
    "web",
]
CE_FULL = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"ce-1"),
    ("ce_type", b"com.segment.track"),
    ("ce_source", b"/shop"),
    ("ce_time", b"2026-03-02T11:00:00Z"),
]
HEADERS: list[Any] = [
    None,
    [],
    {},
    CE_FULL,
    [h for h in CE_FULL if h[0] != "ce_id"],
    [h for h in CE_FULL if h[0] not in ("ce_type", "ce_time")],
    [("CE_SpecVersion", b"1.0"), ("CE_ID", b"x"), ("ce_type", b"page")],
    {"ce_specversion": b"1.0", "ce_id": b"m", "ce_time": b"bad"},
    [("other", b"1")],
]


def message(rng: random.Random) -> dict[str, Any]:
    """Each field mostly one of the first few (usable) values, else any value."""

    def pick(values: list[Any], usable: int) -> Any:
        return rng.choice(values[:usable] if rng.random() < 0.85 else values)

    fields = {
        "type": pick(TYPES, 7),
        "userId": pick(IDS, 4),
        "anonymousId": pick(IDS, 6),
        "messageId": pick(IDS, 6),
        "previousId": pick(IDS, 6),
        "timestamp": pick(TIMES, 9),
        "originalTimestamp": pick(TIMES, 12),
        "event": pick(NAMES, 5),
        "name": pick(NAMES, 7),
        "channel": pick(CHANNELS, 6),
        "properties": pick(OBJECTS, 5),
        "traits": pick(OBJECTS, 5),
        "context": pick(CONTEXTS, 5),
    }
    return {k: v for k, v in fields.items() if v is not _ABSENT}


def outcome(decoder: Any, value: bytes | None, headers: Any) -> Any:
    try:
        event = decoder(value, headers, max_bytes=2048)
    except BadInput as exc:
        return ("bad", exc.reason, str(exc))
    assert event.timestamp.tzinfo is UTC
    return ("event", event)


@pytest.mark.parametrize("seed", range(8))
def test_decode_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    for _ in range(3000):
        value: bytes | None = orjson.dumps(message(rng))
        roll = rng.random()
        if roll < 0.02:
            value = None
        elif roll < 0.04:
            value = b"x" * 3000
        elif roll < 0.06:
            value = rng.choice([b"{oops", b"[1]", b'"s"', b"null", b"1"])
        headers = rng.choice(HEADERS[:3] if rng.random() < 0.7 else HEADERS)
        got, want = outcome(decode, value, headers), outcome(reference_decode, value, headers)
        assert got == want, (value, headers)
        kinds[got[0] if got[0] == "event" else got[1]] += 1
    # Mostly good records, and every kind of bad one among them.
    assert kinds["event"] > 1000
    assert set(kinds) == {"event", *REASONS} - {"unreadable_state"}
