"""The stage machine: ``apply(state, event, now) -> (state', effects)``.

Pure: no I/O, no wall clock. ``now`` is the processing clock (wall clock in
production, the partition's event-time clock in replays); it only ages the dedupe
window. Stage moves follow event time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from operator import itemgetter

from engine.journey.effects import Duplicate, Effect, StageChanged
from engine.journey.events import Event, EventType
from engine.journey.model import LifecycleModel, Rule
from engine.journey.slotted import constructor, replacer
from engine.journey.state import CustomerState, Move, to_ms

_blake2b = hashlib.blake2b
_HASH = itemgetter(0)
_SEEN = itemgetter(1)
_TRACK = EventType.TRACK  # looked up once: a class attribute lookup on an enum is slow
# A worker passes one clock reading for a whole batch of events.
_now_ms = lru_cache(maxsize=4)(to_ms)

# dataclasses.replace for the fields every applied event changes, and for those a
# stage move changes as well; other fields are carried over.
_APPLIED = (
    "model",
    "model_version",
    "first_seen",
    "last_seen",
    "touches",
    "events",
    "late_events",
    "active_days_in_stage",
    "last_active_day",
    "recent_ids",
)
_applied = replacer(CustomerState, *_APPLIED)
_moved = replacer(CustomerState, *_APPLIED, "stage", "stage_entered_at", "history", "visits")
_new_state = constructor(CustomerState)
_move = constructor(Move)
_stage_changed = constructor(StageChanged)


def message_hash(message_id: str) -> int:
    """A stable 63-bit digest of a messageId (the same in every process)."""
    return int.from_bytes(_blake2b(message_id.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(frozen=True, slots=True)
class StageMachine:
    """Applies events to customer states under one lifecycle model.

    ``dedupe_window``: how long an applied ``messageId`` is remembered.
    ``dedupe_max_ids``: how many recent ids one customer keeps at most.
    ``history_limit``: how many stage moves the state keeps.
    """

    model: LifecycleModel
    dedupe_window: timedelta = timedelta(hours=24)
    dedupe_max_ids: int = 32
    history_limit: int = 20
    _window_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dedupe_max_ids < 1 or self.history_limit < 1:
            raise ValueError("dedupe_max_ids and history_limit must be >= 1")
        if self.dedupe_window.total_seconds() < 0:
            raise ValueError("dedupe_window must not be negative")
        object.__setattr__(self, "_window_ms", int(self.dedupe_window.total_seconds() * 1000))

    def new_state(self, customer_id: str) -> CustomerState:
        return _new_state(customer_id, self.model.name, self.model.version)

    def apply(
        self, state: CustomerState | None, event: Event, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        """Apply one event. A duplicate returns the state it was given, unchanged."""
        if state is None:
            state = self.new_state(event.customer_id)
        recent = self._remember(state.recent_ids, message_hash(event.message_id), _now_ms(now))
        if recent is None:
            return state, [Duplicate(customer_id=state.customer_id, message_id=event.message_id)]

        at = event.timestamp
        first_seen, last_seen = state.first_seen, state.last_seen
        late = last_seen is not None and at < last_seen
        if first_seen is None or at < first_seen:
            first_seen = at
        if last_seen is None or at > last_seen:
            last_seen = at
        model = self.model
        is_activity = event.type is _TRACK and event.name in model.activity_events
        active_days = state.active_days_in_stage
        last_day = state.last_active_day
        if is_activity:
            day = at.toordinal()
            if day > last_day:
                active_days += 1
                last_day = day
        touches = dict(state.touches)
        channel = event.channel
        touches[channel] = touches.get(channel, 0) + 1

        stage = state.stage
        candidates = model.candidates(stage, event)
        rule = self._select(candidates, stage, event, active_days, late) if candidates else None
        if rule is None:
            return _applied(
                state,
                model.name,
                model.version,
                first_seen,
                last_seen,
                touches,
                state.events + 1,
                state.late_events + 1 if late else state.late_events,
                active_days,
                last_day,
                recent,
            ), []

        to = rule.to
        visits = dict(state.visits)
        visit = visits[to] = visits.get(to, 0) + 1
        history = (*state.history, _move(stage, to, at, rule.name, event.message_id))
        if len(history) > self.history_limit:
            history = history[-self.history_limit :]
        # Days are counted from the day the stage was entered, that day included.
        day = at.toordinal()
        moved = _moved(
            state,
            model.name,
            model.version,
            first_seen,
            last_seen,
            touches,
            state.events + 1,
            state.late_events + 1 if late else state.late_events,
            1 if is_activity else 0,
            day if is_activity else day - 1,
            recent,
            to,
            at,
            history,
            visits,
        )
        change = _stage_changed(
            state.customer_id,
            stage,
            to,
            at,
            model.name,
            model.version,
            rule.name,
            event.message_id,
            event.label,
            visit,
            state.time_in_stage_s(at),
            late,
        )
        return moved, [change]

    def _remember(
        self, recent: tuple[tuple[int, int], ...], mhash: int, now_ms: int
    ) -> tuple[tuple[int, int], ...] | None:
        """The dedupe window with ``mhash`` added, or None when it is already in it.

        Ids seen before the window's start are dropped, the newest
        ``dedupe_max_ids`` kept.
        """
        if recent:
            horizon = now_ms - self._window_ms
            if min(map(_SEEN, recent)) < horizon:
                recent = tuple(pair for pair in recent if pair[1] >= horizon)
            if mhash in map(_HASH, recent):
                return None
        recent += ((mhash, now_ms),)
        if len(recent) > self.dedupe_max_ids:
            recent = recent[-self.dedupe_max_ids :]
        return recent

    def _select(
        self,
        candidates: tuple[Rule, ...],
        stage: str | None,
        event: Event,
        active_days: int,
        late: bool,
    ) -> Rule | None:
        # A candidate already matches the event's type, name and activity; what is
        # left of ``Rule.matches`` are the active days and the property conditions.
        for rule in candidates:
            if active_days < rule.min_active_days_in_stage:
                continue
            if rule.properties and not all(
                cond.holds(event.properties) for cond in rule.properties
            ):
                continue
            if late and not rule.late and not self._forward(stage, rule.to):
                continue
            return rule
        return None

    def _forward(self, stage: str | None, to: str) -> bool:
        """A late event may move a customer forward along the main path only."""
        here, there = self.model.rank(stage), self.model.rank(to)
        return here is not None and there is not None and there > here
