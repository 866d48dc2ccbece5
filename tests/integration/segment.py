"""Build Segment Spec records for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

T0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=365)
"""09:00 UTC a year ahead: on the wall clock no timer of these journeys comes due
while a test runs (tests of timers use the event-time clock)."""


def at(day: float, hour: float = 0) -> datetime:
    return T0 + timedelta(days=day, hours=hour)


def iso(when: datetime) -> str:
    """As the engine writes times: milliseconds and a ``Z``."""
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seg(
    customer: str,
    what: str,
    when: datetime,
    *,
    mid: str | None = None,
    props: dict[str, Any] | None = None,
    anonymous: bool = False,
) -> dict[str, Any]:
    """``what`` is a call type (page, screen, identify) or a track event name."""
    msg: dict[str, Any] = {
        "messageId": mid or str(uuid.uuid4()),
        "timestamp": when.isoformat().replace("+00:00", "Z"),
    }
    msg["anonymousId" if anonymous else "userId"] = customer
    if what in ("page", "screen", "identify"):
        msg["type"] = what
    else:
        msg["type"] = "track"
        msg["event"] = what
        msg["properties"] = props or {}
    return msg


def record(msg: dict[str, Any], key: str | None = None) -> tuple[bytes | None, bytes, None]:
    customer = msg.get("userId") or msg.get("anonymousId")
    k = key if key is not None else customer
    return (k.encode() if k is not None else None, orjson.dumps(msg), None)
