"""The stage machine: ``apply(state, event, now) -> (state', effects)``.

Pure: no I/O, no wall clock. ``now`` is the processing clock (wall clock in
production, the partition's event-time clock in replays); it only ages the dedupe
window. Stage moves follow event time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from engine.journey.effects import Duplicate, Effect, StageChanged
from engine.journey.events import Event
from engine.journey.model import LifecycleModel, Rule
from engine.journey.state import CustomerState, Move, to_ms


def message_hash(message_id: str) -> int:
    """A stable 63-bit digest of a messageId (the same in every process)."""
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


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

    def __post_init__(self) -> None:
        if self.dedupe_max_ids < 1 or self.history_limit < 1:
            raise ValueError("dedupe_max_ids and history_limit must be >= 1")
        if self.dedupe_window.total_seconds() < 0:
            raise ValueError("dedupe_window must not be negative")

    def new_state(self, customer_id: str) -> CustomerState:
        return CustomerState(
            customer_id=customer_id, model=self.model.name, model_version=self.model.version
        )

    def apply(
        self, state: CustomerState | None, event: Event, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        """Apply one event. A duplicate returns the state it was given, unchanged."""
        if state is None:
            state = self.new_state(event.customer_id)
        mhash = message_hash(event.message_id)
        now_ms = to_ms(now)
        horizon = now_ms - int(self.dedupe_window.total_seconds() * 1000)
        recent = tuple(pair for pair in state.recent_ids if pair[1] >= horizon)
        if any(pair[0] == mhash for pair in recent):
            return state, [Duplicate(customer_id=state.customer_id, message_id=event.message_id)]
        recent = (*recent, (mhash, now_ms))[-self.dedupe_max_ids :]

        at = event.timestamp
        late = state.last_seen is not None and at < state.last_seen
        model = self.model
        is_activity = model.is_activity(event)
        active_days = state.active_days_in_stage
        last_day = state.last_active_day
        if is_activity:
            day = at.toordinal()
            if day > last_day:
                active_days += 1
                last_day = day

        touches = dict(state.touches)
        touches[event.channel] = touches.get(event.channel, 0) + 1
        updated = replace(
            state,
            first_seen=at
            if state.first_seen is None or at < state.first_seen
            else state.first_seen,
            last_seen=at if state.last_seen is None or at > state.last_seen else state.last_seen,
            touches=touches,
            events=state.events + 1,
            late_events=state.late_events + (1 if late else 0),
            active_days_in_stage=active_days,
            last_active_day=last_day,
            recent_ids=recent,
            model=model.name,
            model_version=model.version,
        )

        rule = self._select(state.stage, event, is_activity, active_days, late)
        if rule is None:
            return updated, []
        return self._move(updated, rule, event, is_activity, late)

    def _select(
        self, stage: str | None, event: Event, is_activity: bool, active_days: int, late: bool
    ) -> Rule | None:
        for rule in self.model.candidates(stage, event):
            if not rule.matches(event, is_activity, active_days):
                continue
            if late and not rule.late and not self._forward(stage, rule.to):
                continue
            return rule
        return None

    def _forward(self, stage: str | None, to: str) -> bool:
        """A late event may move a customer forward along the main path only."""
        here, there = self.model.rank(stage), self.model.rank(to)
        return here is not None and there is not None and there > here

    def _move(
        self, state: CustomerState, rule: Rule, event: Event, is_activity: bool, late: bool
    ) -> tuple[CustomerState, list[Effect]]:
        at = event.timestamp
        visits = dict(state.visits)
        visits[rule.to] = visits.get(rule.to, 0) + 1
        move = Move(state.stage, rule.to, at, rule.name, event.message_id)
        history = (*state.history, move)[-self.history_limit :]
        moved = replace(
            state,
            stage=rule.to,
            stage_entered_at=at,
            history=history,
            visits=visits,
            # Days are counted from the day the stage was entered, that day included.
            active_days_in_stage=1 if is_activity else 0,
            last_active_day=at.toordinal() if is_activity else at.toordinal() - 1,
        )
        change = StageChanged(
            customer_id=state.customer_id,
            from_stage=state.stage,
            to_stage=rule.to,
            at=at,
            model=self.model.name,
            model_version=self.model.version,
            rule=rule.name,
            message_id=event.message_id,
            event=event.label,
            visit=visits[rule.to],
            time_in_previous_s=state.time_in_stage_s(at),
            late=late,
        )
        return moved, [change]
