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
``pending_timers``    JSON ``[{"kind", "due_at"}]`` by due time; ``next_timer_at``
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
from engine.messages import iso

FORMAT_VERSION = "1"

_INT_FIELDS = ("model_version", "events", "late_events", "touches_total")
_JSON_FIELDS = ("touches", "visits", "pending_timers")


@dataclass(frozen=True, slots=True)
class PendingTimer:
    kind: str
    due_at: datetime


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


def profile_fields(state: CustomerState, extras: ProfileExtras | None = None) -> dict[str, str]:
    """The hash fields of a customer's profile."""
    move = state.history[-1] if state.history else None
    entered_by = move if move is not None and move.to_stage == state.stage else None
    fields = {
        "v": FORMAT_VERSION,
        "customer_id": state.customer_id,
        "model": state.model,
        "model_version": str(state.model_version),
        "stage": state.stage or "",
        "stage_entered_at": _time(state.stage_entered_at),
        "stage_rule": "" if entered_by is None else entered_by.rule,
        "stage_message_id": "" if entered_by is None else entered_by.message_id,
        "first_seen": _time(state.first_seen),
        "last_seen": _time(state.last_seen),
        "events": str(state.events),
        "late_events": str(state.late_events),
        "touches": _json(dict(state.touches)),
        "touches_total": str(sum(state.touches.values())),
        "visits": _json(dict(state.visits)),
    }
    if extras is not None:
        if extras.pending_timers is not None:
            timers = sorted(extras.pending_timers, key=lambda t: (t.due_at, t.kind))
            fields["pending_timers"] = _json(
                [{"kind": t.kind, "due_at": iso(t.due_at)} for t in timers]
            )
            fields["next_timer_at"] = _time(timers[0].due_at if timers else None)
        if extras.last_trigger is not None:
            t = extras.last_trigger
            fields["last_trigger"] = t.trigger
            fields["last_trigger_id"] = t.trigger_id
            fields["last_trigger_at"] = iso(t.at)
            fields["last_trigger_reason"] = t.reason
            fields["last_trigger_decision"] = t.decision
    return fields


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
    return ProfileExtras(pending_timers=[PendingTimer(t.kind.value, t.due_at) for t in timers])


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
