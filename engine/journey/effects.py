"""Effects returned by the stage machine. The adapters carry them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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


Effect = StageChanged | Duplicate
