"""Wire forms of what the engine writes (schemas in ``topics/schemas/``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from engine.ingest import BadInput
from engine.journey.effects import StageChanged


def iso(at: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``."""
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stage_change(change: StageChanged, processed_at: datetime) -> dict[str, Any]:
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
        "processed_at": iso(processed_at),
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
