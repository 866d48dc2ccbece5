"""The touchpoint event as the core sees it: already decoded and validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """The Segment Spec call types."""

    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


@dataclass(frozen=True, slots=True)
class Event:
    """One touchpoint of one customer.

    ``name`` is the event name of a ``track`` call and the page or screen name of
    ``page``/``screen`` calls (None when absent). ``timestamp`` is event time, a
    timezone-aware UTC datetime. ``channel`` is where the touch happened
    (``browser``, ``mobile``, ``server``, ...). ``timezone`` is the IANA zone
    from ``context.timezone`` (unchecked; the delivery policy ignores unknown ones).
    """

    message_id: str
    customer_id: str
    type: EventType
    timestamp: datetime
    name: str | None = None
    channel: str = "server"
    properties: Mapping[str, Any] = field(default_factory=dict)
    traits: Mapping[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    timezone: str | None = None

    @property
    def label(self) -> str:
        """A short human label: the event name, or the call type."""
        return self.name if self.type is _TRACK and self.name else _VALUES[self.type]


# Looked up once: reading an enum member or its value is slow.
_TRACK = EventType.TRACK
_VALUES = {t: t.value for t in EventType}
