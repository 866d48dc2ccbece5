"""Decoding and validation of Segment Spec and CloudEvents records."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.ingest import BadInput, decode
from engine.journey import EventType

TS = "2026-03-02T09:00:00Z"


def enc(**msg: object) -> bytes:
    return orjson.dumps(msg)


@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        (None, "not_json", "no value"),
        (b"{oops", "not_json", "not JSON"),
        (b'"text"', "not_object", "str"),
        (b"[]", "not_object", "list"),
        (enc(userId="u", timestamp=TS), "missing_field", "type is required"),
        (enc(type="teleport", userId="u", timestamp=TS), "unknown_type", "teleport"),
        (enc(type=3, userId="u", timestamp=TS), "unknown_type", "3"),
        (enc(type="page", timestamp=TS), "no_customer", "userId"),
        (enc(type="page", userId="", anonymousId=None, timestamp=TS), "no_customer", "userId"),
        (enc(type="page", userId={"a": 1}, timestamp=TS), "bad_field", "userId"),
        (enc(type="page", userId="u" * 513, timestamp=TS), "bad_field", "longer"),
        (enc(type="page", userId="u"), "missing_field", "timestamp"),
        (enc(type="page", userId="u", timestamp="2026-03-02 noon"), "bad_timestamp", "ISO"),
        (enc(type="page", userId="u", timestamp="2026-03-02T09:00:00"), "bad_timestamp", "offset"),
        (enc(type="page", userId="u", timestamp=1700000000), "bad_timestamp", "string"),
        (enc(type="track", userId="u", timestamp=TS), "missing_field", "event name"),
        (enc(type="track", event="  ", userId="u", timestamp=TS), "missing_field", "event name"),
        (enc(type="alias", userId="u", timestamp=TS), "missing_field", "previousId"),
        (
            enc(type="track", event="X", userId="u", timestamp=TS, properties=[1]),
            "bad_field",
            "properties",
        ),
        (enc(type="page", userId="u", timestamp=TS, context="web"), "bad_field", "context"),
    ],
)
def test_bad_input_has_a_reason_and_a_readable_message(
    value: bytes | None, reason: str, words: str
) -> None:
    with pytest.raises(BadInput, match=words) as caught:
        decode(value)
    assert caught.value.reason == reason


def test_size_limit_is_checked_before_parsing() -> None:
    big = enc(type="page", userId="u", timestamp=TS, pad="x" * 100)
    assert decode(big, max_bytes=len(big)).customer_id == "u"
    with pytest.raises(BadInput) as caught:
        decode(big, max_bytes=len(big) - 1)
    assert caught.value.reason == "too_large"


def test_track_call_becomes_an_event() -> None:
    event = decode(
        enc(
            type="track",
            event="Order Completed",
            userId="u1",
            anonymousId="a1",
            messageId="m1",
            timestamp="2026-03-02T10:00:00+01:00",
            properties={"revenue": 9},
            context={"channel": "mobile", "traits": {"plan": "pro"}},
        )
    )
    assert event.type is EventType.TRACK
    assert event.name == "Order Completed"
    assert event.customer_id == "u1"  # userId wins over anonymousId
    assert event.anonymous_id == "a1"
    assert event.message_id == "m1"
    assert event.timestamp == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert event.properties == {"revenue": 9}
    assert event.traits == {"plan": "pro"}
    assert event.channel == "mobile"


def test_anonymous_page_view_defaults() -> None:
    event = decode(enc(type="page", anonymousId="anon-1", name="Pricing", originalTimestamp=TS))
    assert event.customer_id == "anon-1"
    assert event.user_id is None
    assert event.name == "Pricing"
    assert event.channel == "browser"
    assert decode(enc(type="screen", userId="u", timestamp=TS)).channel == "mobile"
    assert decode(enc(type="identify", userId="u", timestamp=TS)).channel == "server"


def test_missing_message_id_is_a_stable_digest_of_the_bytes() -> None:
    raw = enc(type="page", userId="u", timestamp=TS)
    first, second = decode(raw), decode(raw)
    assert first.message_id == second.message_id
    assert first.message_id.startswith("sha1:")
    assert decode(enc(type="page", userId="u", timestamp="2026-03-02T09:00:01Z")).message_id != (
        first.message_id
    )


def test_numeric_user_ids_are_strings() -> None:
    assert decode(enc(type="page", userId=42, timestamp=TS)).customer_id == "42"


def test_alias_keeps_previous_id() -> None:
    event = decode(enc(type="alias", userId="u", previousId="anon", timestamp=TS))
    assert (event.type, event.previous_id) == (EventType.ALIAS, "anon")


CE = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"ce-1"),
    ("ce_type", b"com.segment.track"),
    ("ce_source", b"/shop"),
    ("ce_time", b"2026-03-02T11:00:00Z"),
]


def test_cloudevents_binary_mode_fills_id_time_and_type() -> None:
    event = decode(orjson.dumps({"event": "Signed Up", "userId": "u"}), CE)
    assert event.type is EventType.TRACK
    assert event.message_id == "ce-1"
    assert event.timestamp == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_cloudevents_data_fields_win_over_headers() -> None:
    event = decode(enc(type="page", userId="u", messageId="m", timestamp=TS), CE)
    assert (event.type, event.message_id) == (EventType.PAGE, "m")
    assert event.timestamp == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_cloudevent_without_id_is_rejected() -> None:
    headers = [h for h in CE if h[0] != "ce_id"]
    with pytest.raises(BadInput) as caught:
        decode(enc(type="page", userId="u", timestamp=TS), headers)
    assert caught.value.reason == "bad_cloudevent"
