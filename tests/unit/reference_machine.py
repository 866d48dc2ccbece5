"""The stage machine written plainly, rule by rule, as the oracle for the fast one.

:func:`reference_apply` is ``StageMachine.apply`` without any shortcut: every rule
of the model is tried in file order with :meth:`Rule.matches`, the dedupe window is
rebuilt on every event and the state is copied with ``dataclasses.replace``. The
tests in ``test_machine_equivalence.py`` feed both the same streams and require the
same states and effects, event by event.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime

from engine.journey import CustomerState, Duplicate, Effect, Event, StageChanged, StageMachine
from engine.journey.model import Rule
from engine.journey.state import Move, to_ms


def reference_hash(message_id: str) -> int:
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _rank(machine: StageMachine, stage: str | None) -> int | None:
    if stage is None:
        return -1
    path = machine.model.path
    return path.index(stage) if stage in path else None


def _select(
    machine: StageMachine,
    stage: str | None,
    event: Event,
    is_activity: bool,
    active_days: int,
    late: bool,
) -> Rule | None:
    for rule in machine.model.rules:
        if stage not in rule.sources or rule.to == stage:
            continue
        if not rule.matches(event, is_activity, active_days):
            continue
        if late and not rule.late:
            here, there = _rank(machine, stage), _rank(machine, rule.to)
            if here is None or there is None or there <= here:
                continue
        return rule
    return None


def reference_apply(
    machine: StageMachine, state: CustomerState | None, event: Event, now: datetime
) -> tuple[CustomerState, list[Effect]]:
    model = machine.model
    if state is None:
        state = CustomerState(
            customer_id=event.customer_id, model=model.name, model_version=model.version
        )
    mhash = reference_hash(event.message_id)
    now_ms = to_ms(now)
    horizon = now_ms - int(machine.dedupe_window.total_seconds() * 1000)
    recent = tuple(pair for pair in state.recent_ids if pair[1] >= horizon)
    if any(pair[0] == mhash for pair in recent):
        return state, [Duplicate(customer_id=state.customer_id, message_id=event.message_id)]
    recent = (*recent, (mhash, now_ms))[-machine.dedupe_max_ids :]

    at = event.timestamp
    late = state.last_seen is not None and at < state.last_seen
    is_activity = event.type == "track" and event.name in model.activity_events
    active_days = state.active_days_in_stage
    last_day = state.last_active_day
    if is_activity and at.toordinal() > last_day:
        active_days += 1
        last_day = at.toordinal()
    touches = dict(state.touches)
    touches[event.channel] = touches.get(event.channel, 0) + 1
    updated = replace(
        state,
        first_seen=at if state.first_seen is None or at < state.first_seen else state.first_seen,
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
    rule = _select(machine, state.stage, event, is_activity, active_days, late)
    if rule is None:
        return updated, []

    visits = dict(updated.visits)
    visits[rule.to] = visits.get(rule.to, 0) + 1
    history = (*updated.history, Move(updated.stage, rule.to, at, rule.name, event.message_id))
    moved = replace(
        updated,
        stage=rule.to,
        stage_entered_at=at,
        history=history[-machine.history_limit :],
        visits=visits,
        active_days_in_stage=1 if is_activity else 0,
        last_active_day=at.toordinal() if is_activity else at.toordinal() - 1,
    )
    previous = None
    if updated.stage_entered_at is not None:
        previous = max(0.0, (at - updated.stage_entered_at).total_seconds())
    change = StageChanged(
        customer_id=state.customer_id,
        from_stage=state.stage,
        to_stage=rule.to,
        at=at,
        model=model.name,
        model_version=model.version,
        rule=rule.name,
        message_id=event.message_id,
        event=event.name if event.type == "track" and event.name else str(event.type),
        visit=visits[rule.to],
        time_in_previous_s=previous,
        late=late,
    )
    return moved, [change]
