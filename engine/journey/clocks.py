"""The event-time clock: a partition's time is the newest event time it has seen.

Used for replays, backfills and tests instead of the wall clock: the same rules
and timers then run through weeks of journey time in seconds. Pure: time only
moves when an event (or the caller) says so, and never backwards.
"""

from __future__ import annotations

from datetime import datetime

from engine.journey.state import EPOCH


class EventTimeClock:
    """``now`` is the newest event time observed so far.

    ``observe(at, ceiling=...)`` lets the caller cap a jump (for instance at the
    wall clock plus an allowed skew), so one event stamped far in the future does
    not fire every timer of the partition at once.
    """

    __slots__ = ("_now",)

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ValueError("EventTimeClock needs a timezone-aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def observe(self, at: datetime, ceiling: datetime | None = None) -> datetime:
        """Move forward to ``at`` (capped at ``ceiling``); returns the new ``now``."""
        if ceiling is not None and at > ceiling:
            at = ceiling
        if at > self._now:
            self._now = at
        return self._now


class PartitionClocks:
    """One :class:`EventTimeClock` per partition."""

    __slots__ = ("_clocks", "_start")

    def __init__(self, start: datetime = EPOCH) -> None:
        self._clocks: dict[int, EventTimeClock] = {}
        self._start = start

    def clock(self, partition: int) -> EventTimeClock:
        found = self._clocks.get(partition)
        if found is None:
            found = self._clocks[partition] = EventTimeClock(self._start)
        return found

    def observe(self, partition: int, at: datetime, ceiling: datetime | None = None) -> datetime:
        return self.clock(partition).observe(at, ceiling)

    def now(self, partition: int) -> datetime:
        return self.clock(partition).now()

    def forget(self, partition: int) -> None:
        """The partition moved to another worker."""
        self._clocks.pop(partition, None)
