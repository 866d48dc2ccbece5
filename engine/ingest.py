"""Decode and validate touchpoints: Segment Spec JSON, or CloudEvents binary mode.

Anything unusable raises :class:`BadInput` with a reason code (a bounded set, used
as a metric label and a dead-letter header) and a sentence a person can read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from engine.journey.events import Event, EventType
from engine.journey.slotted import constructor

REASONS = (
    "too_large",
    "not_json",
    "not_object",
    "unknown_type",
    "missing_field",
    "bad_field",
    "bad_timestamp",
    "no_customer",
    "bad_cloudevent",
    "unreadable_state",
)

_TYPES = {t.value: t for t in EventType}
_DEFAULT_CHANNEL = {EventType.PAGE: "browser", EventType.SCREEN: "mobile"}
MAX_ID = 512
_MAX_ID = MAX_ID
_event = constructor(Event)  # Event(...) with every field, positionally
# Enum members looked up once (a class attribute lookup on an enum is slow).
_TRACK, _ALIAS = EventType.TRACK, EventType.ALIAS
_NAMED = (EventType.PAGE, EventType.SCREEN)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class BadInput(ValueError):
    """Input that cannot be applied. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 timestamp with a UTC offset, as an aware UTC datetime."""
    if not isinstance(value, str):
        raise BadInput("bad_timestamp", f"{field} must be an ISO 8601 string, got {value!r:.60}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput("bad_timestamp", f"{field} is not ISO 8601: {value!r:.60}") from None
    zone = parsed.tzinfo
    if zone is UTC:  # 'Z' and '+00:00' parse to the UTC singleton: nothing to convert
        return parsed
    if zone is None:
        raise BadInput("bad_timestamp", f"{field} has no UTC offset: {value!r:.60}")
    return parsed.astimezone(UTC)


def _optional_id(msg: Mapping[str, Any], field: str) -> str | None:
    value = msg.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadInput("bad_field", f"{field} must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID:
        raise BadInput("bad_field", f"{field} is longer than {MAX_ID} characters")
    return value


def _object(msg: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = msg.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput("bad_field", f"{field} must be an object, got {type(value).__name__}")
    return value


def _headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> dict[str, str]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for k, v in items:
        out[k.lower()] = (
            v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
        )
    return out


def decode(
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None = None,
    *,
    max_bytes: int = 32 * 1024,
) -> Event:
    """Turn one Kafka record value (and headers) into an :class:`Event`."""
    if value is None:
        raise BadInput("not_json", "the record has no value")
    if len(value) > max_bytes:
        raise BadInput("too_large", f"the record is {len(value)} bytes; the limit is {max_bytes}")
    ce = _headers(headers) if headers else _NO_HEADERS
    cloud = "ce_specversion" in ce
    if cloud and not ce.get("ce_id"):
        raise BadInput("bad_cloudevent", "CloudEvents record without a ce_id header")
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"the value is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BadInput("not_object", f"the value is JSON {type(msg).__name__}, not an object")
    return from_segment(msg, value, ce if cloud else None)


def from_segment(msg: dict[str, Any], raw: bytes, ce: Mapping[str, str] | None = None) -> Event:
    kind = msg.get("type")
    if kind is None and ce is not None:
        kind = ce.get("ce_type", "").rsplit(".", 1)[-1]
    if kind is None:
        raise BadInput("missing_field", "type is required (identify, track, page, ...)")
    etype = _TYPES.get(kind) if isinstance(kind, str) else None
    if etype is None:
        raise BadInput(
            "unknown_type", f"unknown type {kind!r:.60}; expected one of {sorted(_TYPES)}"
        )

    # Ids are usually non-empty strings; anything else takes the checks of _optional_id.
    user_id: str | None = msg.get("userId")
    if user_id.__class__ is not str or not user_id or len(user_id) > _MAX_ID:
        user_id = _optional_id(msg, "userId")
    anonymous_id: str | None = msg.get("anonymousId")
    if anonymous_id.__class__ is not str or not anonymous_id or len(anonymous_id) > _MAX_ID:
        anonymous_id = _optional_id(msg, "anonymousId")
    customer = user_id or anonymous_id
    if customer is None:
        raise BadInput("no_customer", "neither userId nor anonymousId is set")

    message_id: str | None = msg.get("messageId")
    if message_id.__class__ is not str or not message_id or len(message_id) > _MAX_ID:
        message_id = _optional_id(msg, "messageId")
    if message_id is None and ce is not None:
        message_id = ce.get("ce_id")
    if message_id is None:
        message_id = "sha1:" + hashlib.sha1(raw, usedforsecurity=False).hexdigest()

    stamp = msg.get("timestamp") or msg.get("originalTimestamp")
    if stamp is not None:
        at = parse_time(stamp, "timestamp")
    elif ce is not None and ce.get("ce_time"):
        at = parse_time(ce["ce_time"], "ce_time")
    else:
        raise BadInput("missing_field", "timestamp is required (ISO 8601 with a UTC offset)")

    name: str | None = None
    previous_id: str | None = None
    if etype is _TRACK:
        event_name = msg.get("event")
        if not isinstance(event_name, str) or not event_name.strip():
            raise BadInput("missing_field", "a track call needs an event name")
        if len(event_name) > MAX_ID:
            raise BadInput("bad_field", f"event is longer than {MAX_ID} characters")
        name = event_name.strip()
    elif etype in _NAMED:
        page = msg.get("name")
        name = page if isinstance(page, str) and page else None
    elif etype is _ALIAS:
        previous_id = _optional_id(msg, "previousId")
        if previous_id is None or user_id is None:
            raise BadInput("missing_field", "an alias call needs previousId and userId")

    # Objects are usually dicts or absent; anything else takes the checks of _object.
    context = msg.get("context")
    if context.__class__ is not dict:
        context = _object(msg, "context")
    channel = msg.get("channel") or context.get("channel")
    if not isinstance(channel, str) or not channel:
        channel = _DEFAULT_CHANNEL.get(etype, "server")
    properties = msg.get("properties")
    if properties.__class__ is not dict:
        properties = _object(msg, "properties")
    traits = msg.get("traits")
    if traits.__class__ is not dict:
        traits = _object(msg, "traits")
    if not traits:  # the call's own traits win; else those of its context
        traits = context.get("traits")
        if traits.__class__ is not dict:
            traits = _object(context, "traits")

    zone = context.get("timezone")
    return _event(
        message_id,
        customer,
        etype,
        at,
        name,
        channel[:32],
        properties,
        traits,
        user_id,
        anonymous_id,
        previous_id,
        zone if isinstance(zone, str) and 0 < len(zone) <= 64 else None,
    )
