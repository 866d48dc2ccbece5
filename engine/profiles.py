"""The customer profile read model: one Redis hash per customer, built from the state.

Pure: :func:`profile_fields` turns a :class:`~engine.journey.CustomerState` (and,
when known, the customer's pending timers and last trigger) into the hash's string
fields; :func:`read_profile` turns a stored hash back into a JSON-ready dict. The
Redis adapter is :mod:`engine.redis_store`.

Fields (all strings, ``""`` for none; times ISO 8601 UTC):

===================== ========================================================
``v``                 format version (1)
``customer_id``       the customer
``model``             lifecycle model name; ``model_version`` its version
``stage``             current lifecycle stage
``stage_entered_at``  event time the customer entered it
``stage_rule``        the model rule that moved the customer there;
                      ``stage_message_id`` the input that caused it
``first_seen``        oldest event time applied; ``last_seen`` the newest
``events``            events applied (duplicates excluded); ``late_events``
``touches``           JSON ``{channel: count}``; ``touches_total`` their sum
``visits``            JSON ``{stage: times entered}``
``pending_timers``    JSON ``[{"due_at", "kind", "rule"}]`` by due time; ``next_timer_at``
``last_trigger``      trigger type, with ``last_trigger_id``, ``_at``, ``_reason``
                      and ``_decision`` (the contact policy's decision)
===================== ========================================================

The timer and trigger fields are written only when they are passed in, so an update
that knows only the state leaves them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from engine.journey import CustomerState, PolicyDecision, Timer
from engine.journey.state import from_ms
from engine.messages import iso, iso_ms

FORMAT_VERSION = "1"

_INT_FIELDS = ("model_version", "events", "late_events", "touches_total")
_JSON_FIELDS = ("touches", "visits", "pending_timers")


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """A timer the customer waits for: its kind (``rule`` or ``release``), due time
    (epoch milliseconds) and the time rule (or quiet-hours release) behind it."""

    kind: str
    due_ms: int
    rule: str = ""

    @property
    def due_at(self) -> datetime:
        return from_ms(self.due_ms)


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """The last trigger raised for a customer and what the contact policy decided."""

    trigger: str
    trigger_id: str
    at: datetime
    reason: str
    decision: str


@dataclass(frozen=True, slots=True)
class ProfileExtras:
    """What the profile shows beyond the state; None leaves the stored fields alone."""

    pending_timers: Sequence[PendingTimer] | None = None
    last_trigger: TriggerRecord | None = None

    def merged_over(self, older: ProfileExtras | None) -> ProfileExtras:
        """These extras, with the parts they leave out taken from ``older``."""
        if older is None:
            return self
        return ProfileExtras(
            pending_timers=(
                self.pending_timers if self.pending_timers is not None else older.pending_timers
            ),
            last_trigger=self.last_trigger if self.last_trigger is not None else older.last_trigger,
        )


def _time(at: datetime | None) -> str:
    return "" if at is None else iso(at)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def _map_json(value: Mapping[str, int]) -> str:
    return _json(value if type(value) is dict else dict(value))


_NO_TIMERS = "[]"


def profile_fields(state: CustomerState, extras: ProfileExtras | None = None) -> dict[str, str]:
    """The hash fields of a customer's profile."""
    stage, history, touches = state.stage, state.history, state.touches
    move = history[-1] if history else None
    if move is not None and move.to_stage == stage:
        rule, message_id = move.rule, move.message_id
    else:
        rule = message_id = ""
    fields = {
        "v": FORMAT_VERSION,
        "customer_id": state.customer_id,
        "model": state.model,
        "model_version": str(state.model_version),
        "stage": stage or "",
        "stage_entered_at": _time(state.stage_entered_at),
        "stage_rule": rule,
        "stage_message_id": message_id,
        "first_seen": _time(state.first_seen),
        "last_seen": _time(state.last_seen),
        "events": str(state.events),
        "late_events": str(state.late_events),
        "touches": _map_json(touches),
        "touches_total": str(sum(touches.values())),
        "visits": _map_json(state.visits),
    }
    if extras is not None:
        timers = extras.pending_timers
        if timers is not None:
            if timers:
                ordered = sorted(timers, key=_timer_order)
                fields["pending_timers"] = _json(
                    [{"due_at": iso_ms(t.due_ms), "kind": t.kind, "rule": t.rule} for t in ordered]
                )
                fields["next_timer_at"] = iso_ms(ordered[0].due_ms)
            else:
                fields["pending_timers"] = _NO_TIMERS
                fields["next_timer_at"] = ""
        if extras.last_trigger is not None:
            t = extras.last_trigger
            fields["last_trigger"] = t.trigger
            fields["last_trigger_id"] = t.trigger_id
            fields["last_trigger_at"] = iso(t.at)
            fields["last_trigger_reason"] = t.reason
            fields["last_trigger_decision"] = t.decision
    return fields


def _timer_order(timer: PendingTimer) -> tuple[int, str, str]:
    return timer.due_ms, timer.kind, timer.rule


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def read_profile(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """A stored hash as JSON-ready values: numbers, objects, lists, None for empty."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name, text = _text(key), _text(value)
        if name in _INT_FIELDS:
            out[name] = int(text) if text else None
        elif name in _JSON_FIELDS:
            out[name] = orjson.loads(text) if text else None
        else:
            out[name] = text or None
    return out


def pending_extras(timers: Sequence[Timer]) -> ProfileExtras:
    """A profile's pending timers (``TriggerEngine.pending_timers`` of its state)."""
    return ProfileExtras(
        pending_timers=[PendingTimer(t.kind.value, t.due_ms, t.rule) for t in timers]
    )


def timer_extras(
    pending_timers: Callable[[CustomerState], Sequence[Timer]],
) -> Callable[[CustomerState], ProfileExtras]:
    """The extras that follow from a state itself, its pending timers: for the
    profile store to compute whenever it writes a profile."""

    def derive(state: CustomerState) -> ProfileExtras:
        return pending_extras(pending_timers(state))

    return derive


def last_trigger(decision: PolicyDecision) -> TriggerRecord:
    """The profile's last trigger: the trigger a policy decision was about."""
    return TriggerRecord(
        trigger=decision.type.value,
        trigger_id=decision.trigger_id,
        at=decision.decided_at,
        reason=decision.reason,
        decision=decision.outcome.value,
    )
