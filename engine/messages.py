"""Wire forms of what the engine writes (schemas in ``topics/schemas/``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import orjson

from engine.ingest import BadInput
from engine.journey.effects import Cause, PolicyDecision, StageChanged, TriggerFired
from engine.journey.timers import Timer, TimerKind


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


def iso_ms(ms: int) -> str:
    """:func:`iso` of an instant in epoch milliseconds, without making a datetime."""
    days, rem = divmod(ms, 86_400_000)
    seconds, millis = divmod(rem, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (
        f"{_day(days + _EPOCH_ORDINAL)}T{_DIGITS[hours]}:{_DIGITS[minutes]}:"
        f"{_DIGITS[seconds]}.{_MILLIS[millis]}Z"
    )


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
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


class BadMessage(ValueError):
    """A record of one of our topics that does not have the form we write."""


def _time(raw: Any, name: str) -> datetime:
    if not isinstance(raw, str):
        raise BadMessage(f"{name} must be an ISO 8601 string")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise BadMessage(f"{name} is not an ISO 8601 time: {raw!r}") from None
    if at.tzinfo is None:
        raise BadMessage(f"{name} has no UTC offset: {raw!r}")
    return at.astimezone(UTC)


def parse_stage_change(value: bytes | dict[str, Any]) -> StageChanged:
    """A stage-change record (the form :func:`stage_change` writes) as the core's effect."""
    try:
        payload = orjson.loads(value) if isinstance(value, bytes | bytearray) else value
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadMessage("a stage change must be a JSON object")
    cause = payload.get("cause")
    if not isinstance(cause, dict):
        raise BadMessage("cause must be an object")
    try:
        customer, to_stage, model = (payload[k] for k in ("customer_id", "to_stage", "model"))
        from_stage, version, visit = (payload[k] for k in ("from_stage", "model_version", "visit"))
    except KeyError as exc:
        raise BadMessage(f"missing field {exc.args[0]}") from None
    if not all(isinstance(v, str) and v for v in (customer, to_stage, model)):
        raise BadMessage("customer_id, to_stage and model must be non-empty strings")
    if from_stage is not None and not isinstance(from_stage, str):
        raise BadMessage("from_stage must be a string or null")
    for name, number in (("model_version", version), ("visit", visit)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise BadMessage(f"{name} must be a whole number >= 1")
    spent = payload.get("time_in_previous_stage_s")
    if spent is not None and (
        not isinstance(spent, int | float) or isinstance(spent, bool) or spent < 0
    ):
        raise BadMessage("time_in_previous_stage_s must be a number >= 0 or null")
    return StageChanged(
        customer_id=customer,
        from_stage=from_stage,
        to_stage=to_stage,
        at=_time(payload.get("at"), "at"),
        model=model,
        model_version=version,
        rule=str(cause.get("rule", "")),
        message_id=str(cause.get("message_id", "")),
        event=str(cause.get("event", "")),
        visit=visit,
        time_in_previous_s=None if spent is None else float(spent),
        late=bool(payload.get("late", False)),
    )


def cause(c: Cause) -> dict[str, Any]:
    if c.message_id is not None:
        return {"message_ids": [c.message_id]}
    assert c.timer_rule is not None
    assert c.timer_due is not None
    return {"timer": {"rule": c.timer_rule, "due_at": iso(c.timer_due)}}


def trigger(t: TriggerFired, processed_at: datetime) -> dict[str, Any]:
    """For the topic of the trigger's type (``Catalog.trigger_topic(t.type)``)."""
    return {
        "trigger_id": t.trigger_id,
        "type": t.type.value,
        "customer_id": t.customer_id,
        "stage": t.stage,
        "rule": t.rule,
        "fired_at": iso(t.fired_at),
        "cause": cause(t.cause),
        "model": t.model,
        "model_version": t.model_version,
        "priority": t.priority,
        "processed_at": iso(processed_at),
    }


def trigger_decision(d: PolicyDecision) -> dict[str, Any]:
    """For the decisions topic (``Catalog.DECISIONS``)."""
    return {
        "trigger_id": d.trigger_id,
        "type": d.type.value,
        "customer_id": d.customer_id,
        "rule": d.rule,
        "cause": cause(d.cause),
        "priority": d.priority,
        "outcome": d.outcome.value,
        "reason": d.reason,
        "decided_at": iso(d.decided_at),
        "release_at": None if d.release_at is None else iso(d.release_at),
    }


def timer(t: Timer) -> dict[str, Any]:
    """For the timers topic (``Catalog.TIMERS``), key = the customer id."""
    return {
        "customer_id": t.customer_id,
        "rule": t.rule,
        "kind": t.kind.value,
        "due_ms": t.due_ms,
        "due_at": iso(t.due_at),
        "generation": t.generation,
    }


_TIMER_KINDS = {k.value: k for k in TimerKind}


def decode_timer(value: bytes | None) -> Timer:
    """A record of the timers topic; BadInput (for the dead-letter topic) if unusable."""
    if value is None:
        raise BadInput("not_json", "the timer record has no value")
    try:
        msg = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"the timer record is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise BadInput("not_object", "the timer record is not a JSON object")
    for name in ("customer_id", "rule", "kind", "due_ms", "generation"):
        if name not in msg:
            raise BadInput("missing_field", f"the timer record has no {name}")
    customer, rule, kind = msg["customer_id"], msg["rule"], msg["kind"]
    due, generation = msg["due_ms"], msg["generation"]
    if not isinstance(customer, str) or not customer or not isinstance(rule, str) or not rule:
        raise BadInput("bad_field", "timer customer_id and rule must be non-empty strings")
    if kind not in _TIMER_KINDS:
        raise BadInput("bad_field", f"timer kind must be rule or release, got {kind!r:.40}")
    for name, number in (("due_ms", due), ("generation", generation)):
        if not isinstance(number, int) or isinstance(number, bool):
            raise BadInput("bad_field", f"timer {name} must be an integer, got {number!r:.40}")
    return Timer(customer, rule, due, generation, _TIMER_KINDS[kind])
