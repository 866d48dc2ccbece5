"""Effects returned by the stage machine. The adapters carry them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from engine.journey.state import to_ms
from engine.journey.trigger_rules import TriggerType


@dataclass(frozen=True, slots=True)
class StageChanged:
    """A customer moved from one lifecycle stage to another.

    ``from_stage`` is None for a customer's first stage. ``rule`` names the model
    rule that matched and ``message_id``/``event`` the input that caused it.
    ``visit`` counts how many times the customer has now entered ``to_stage``.
    ``late`` is True when the causing event was older than the newest one applied.
    """

    customer_id: str
    from_stage: str | None
    to_stage: str
    at: datetime
    model: str
    model_version: int
    rule: str
    message_id: str
    event: str
    visit: int
    time_in_previous_s: float | None
    late: bool = False


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An event whose ``messageId`` was already applied within the dedupe window."""

    customer_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Cause:
    """What made a trigger fire: one event (``message_id``), or a timer (the time
    rule ``timer_rule`` due at ``timer_due``)."""

    message_id: str | None = None
    timer_rule: str | None = None
    timer_due: datetime | None = None

    @property
    def key(self) -> str:
        """``event:<messageId>`` or ``timer:<rule>@<due epoch ms>``: part of the trigger id."""
        if self.message_id is not None:
            return f"event:{self.message_id}"
        assert self.timer_rule is not None
        assert self.timer_due is not None
        return f"timer:{self.timer_rule}@{to_ms(self.timer_due)}"


@dataclass(frozen=True, slots=True)
class TriggerFired:
    """A trigger the delivery policy let through: one message on its type's topic.

    ``trigger_id`` is derived from the model, customer, rule and cause only, so the
    same input gives the same id after a restart or in a replay. ``stage`` is the
    customer's stage once the cause was applied. ``fired_at`` is the cause's time:
    the event time, or the timer's due time.
    """

    trigger_id: str
    type: TriggerType
    customer_id: str
    stage: str | None
    rule: str
    fired_at: datetime
    cause: Cause
    model: str
    model_version: int
    priority: int


class Outcome(StrEnum):
    """What the delivery policy did with a trigger."""

    SENT = "sent"
    HELD = "held"
    CAPPED = "capped"
    SUPPRESSED = "suppressed"
    COOLDOWN = "cooldown"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The delivery policy's decision on one trigger, with a reason a person can
    read. Every trigger gets one, whether it went out or not; ``release_at`` is set
    when it is held."""

    trigger_id: str
    type: TriggerType
    customer_id: str
    rule: str
    cause: Cause
    priority: int
    outcome: Outcome
    reason: str
    decided_at: datetime
    release_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimerIgnored:
    """A fired timer that no longer applies (the customer moved on, it already
    fired, ...). Nothing else happens; ``reason`` says why."""

    customer_id: str
    rule: str
    due_at: datetime
    generation: int
    reason: str


Effect = StageChanged | Duplicate | TriggerFired | PolicyDecision | TimerIgnored
