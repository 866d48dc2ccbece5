"""Terse builders for journey tests: events at explicit times, and a replay helper.

Every timestamp is an explicit, timezone-aware UTC datetime counted from ``T0``
(Monday 2024-06-03 00:00 UTC), so tests read as "day 2, hour 9".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.journey import CustomerState, Effect, Event, EventType, StageChanged, StageMachine

T0 = datetime(2024, 6, 3, tzinfo=UTC)
"""Day 0 of every test journey."""

CUSTOMER = "c1"

_CALL_TYPES = {t.value: t for t in EventType}
_ids = itertools.count(1)


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """The instant ``day`` days, ``hour`` hours, ... after ``T0``."""
    return T0 + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def ev(
    kind_or_name: str,
    day: int = 0,
    hour: int = 0,
    props: Mapping[str, Any] | None = None,
    mid: str | None = None,
    channel: str = "browser",
    *,
    minute: int = 0,
    customer: str = CUSTOMER,
) -> Event:
    """One event. A Segment call type (``"page"``, ``"screen"``, ...) builds that call;
    anything else is the name of a ``track`` call. ``mid`` defaults to a fresh id."""
    call = _CALL_TYPES.get(kind_or_name)
    return Event(
        message_id=mid if mid is not None else f"m-{next(_ids)}",
        customer_id=customer,
        type=call if call is not None else EventType.TRACK,
        timestamp=at(day, hour, minute),
        name=None if call is not None else kind_or_name,
        channel=channel,
        properties=dict(props or {}),
    )


Move = tuple[str, str] | None
"""What one event did: ``(to_stage, rule)``, or None when the stage stayed."""


def replay(
    machine: StageMachine,
    events: Iterable[Event],
    state: CustomerState | None = None,
) -> tuple[CustomerState, list[StageChanged | None]]:
    """Apply events in the order given. The processing clock ``now`` is the newest
    event time so far (it never goes back, as a consumer's clock would not).
    Returns the final state and, per event, its StageChanged or None."""
    changes: list[StageChanged | None] = []
    now: datetime | None = None
    for event in events:
        now = event.timestamp if now is None or event.timestamp > now else now
        state, effects = machine.apply(state, event, now)
        changes.append(stage_change(effects))
    assert state is not None, "replay needs at least one event"
    return state, changes


def stage_change(effects: list[Effect]) -> StageChanged | None:
    """The single StageChanged among ``effects``, or None."""
    found = [e for e in effects if isinstance(e, StageChanged)]
    assert len(found) <= 1, f"more than one stage change: {found}"
    return found[0] if found else None


def moves(changes: Iterable[StageChanged | None]) -> list[Move]:
    """``(to_stage, rule)`` per event, for comparison with a test table."""
    return [None if c is None else (c.to_stage, c.rule) for c in changes]


Step = tuple[Event, Move]
"""A row of a journey table: an event and the move it is expected to make."""


def unzip(steps: Iterable[Step]) -> tuple[list[Event], list[Move]]:
    """Split a journey table into its events and its expected moves."""
    pairs = list(steps)
    return [event for event, _ in pairs], [move for _, move in pairs]


def final_stage(expected: Iterable[Move]) -> str | None:
    """The stage a customer ends in after the moves ``expected`` (None if none moved)."""
    stages = [move[0] for move in expected if move is not None]
    return stages[-1] if stages else None
