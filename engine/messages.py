"""Wire forms of what the engine writes (schemas in ``topics/schemas/``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import orjson

from engine.ingest import BadInput
from engine.journey.effects import StageChanged


def iso(at: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``."""
    if at.tzinfo is UTC:
        # isoformat() formats through printf-style templates: several times slower
        # than putting the string together from cached pieces.
        return (
            f"{_day(at.toordinal())}T{_DIGITS[at.hour]}:{_DIGITS[at.minute]}:"
            f"{_DIGITS[at.second]}.{_MILLIS[at.microsecond // 1000]}Z"
        )
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_DIGITS = [f"{n:02d}" for n in range(60)]
_MILLIS = [f"{n:03d}" for n in range(1000)]


@lru_cache(maxsize=1024)
def _day(ordinal: int) -> str:
    """``YYYY-MM-DD`` of a proleptic Gregorian ordinal."""
    return date.fromordinal(ordinal).isoformat()


def stage_change(change: StageChanged, processed_at: datetime) -> dict[str, Any]:
    return _stage_change(change, iso(processed_at))


def stage_change_value(change: StageChanged, processed_at: str) -> bytes:
    """The encoded :func:`stage_change`, with ``processed_at`` already formatted by
    :func:`iso` (one clock reading serves a whole batch)."""
    return orjson.dumps(_stage_change(change, processed_at))


def _stage_change(change: StageChanged, processed_at: str) -> dict[str, Any]:
    return {
        "customer_id": change.customer_id,
        "from_stage": change.from_stage,
        "to_stage": change.to_stage,
        "at": iso(change.at),
        "model": change.model,
        "model_version": change.model_version,
        "visit": change.visit,
        "time_in_previous_stage_s": change.time_in_previous_s,
        "late": change.late,
        "cause": {"message_id": change.message_id, "rule": change.rule, "event": change.event},
        "processed_at": processed_at,
    }


def dead_letter_headers(
    error: BadInput | Exception,
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    failed_at: datetime,
) -> list[tuple[str, bytes]]:
    reason = error.reason if isinstance(error, BadInput) else "unreadable_state"
    headers = [
        ("journey.reason", reason),
        ("journey.error", str(error)[:1000]),
        ("journey.exception", type(error).__name__),
        ("journey.original.topic", topic),
        ("journey.original.partition", str(partition)),
        ("journey.original.offset", str(offset)),
        ("journey.failed_at", iso(failed_at)),
    ]
    if timestamp_ms is not None:
        headers.append(("journey.original.timestamp", str(timestamp_ms)))
    return [(k, v.encode("utf-8")) for k, v in headers]


def dumps(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)
