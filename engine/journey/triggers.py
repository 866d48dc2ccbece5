"""Triggers around the stage machine: event rules, time rules, the policy gate.

:class:`TriggerEngine` wraps a :class:`StageMachine`. ``apply`` applies an event
(stage rules first) and then fires the event rules that match; ``apply_timer``
applies a fired timer: a time rule, or the release of triggers held for quiet
hours. Every trigger passes :func:`policy.decide`; the result is effects:
``TriggerFired`` (sent triggers only) and one ``PolicyDecision`` per trigger.

A trigger id is a digest of the model name, the customer, the rule and the cause
(the event's messageId, or the timer's rule and due time), so the same input
always gives the same id; the customer's memory of decided ids turns a replayed
trigger into a ``duplicate`` decision instead of a second send.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from engine.journey.effects import (
    Cause,
    Effect,
    Outcome,
    PolicyDecision,
    StageChanged,
    TimerIgnored,
    TriggerFired,
)
from engine.journey.events import Event, EventType
from engine.journey.machine import StageMachine
from engine.journey.model import LifecycleModel
from engine.journey.policy import DeliveryPolicy, decide, supersede, valid_timezone
from engine.journey.state import CustomerState, Move, from_ms, to_ms
from engine.journey.timers import (
    Timer,
    TimerKind,
    clock_base,
    next_due_ms,
    next_timer,
    pending_timers,
    prune_fired,
)
from engine.journey.trigger_rules import EventRule, TimeKind, TriggerRule, TriggerRules
from engine.journey.trigger_state import EMPTY, Held, TriggerMemory, keep_decided

_MAX_CATCH_UP = 16
_TRACK = EventType.TRACK

TIMER_EVENT = "timer"
"""The ``event`` label of a stage change made by a time rule's ``move_to``."""


def trigger_id(model: str, customer_id: str, rule: str, cause: Cause) -> str:
    """32 hex digits, the same in every process for the same arguments."""
    text = f"{model}\x1f{customer_id}\x1f{rule}\x1f{cause.key}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def parse_cause_key(key: str) -> Cause:
    """The inverse of ``Cause.key``."""
    if key.startswith("event:"):
        return Cause(message_id=key[6:])
    rule, _, due = key[6:].rpartition("@")
    return Cause(timer_rule=rule, timer_due=from_ms(int(due)))


@dataclass(frozen=True, slots=True)
class TriggerEngine:
    """The stage machine plus trigger rules and the delivery policy."""

    machine: StageMachine
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    @property
    def model(self) -> LifecycleModel:
        return self.machine.model

    @property
    def rules(self) -> TriggerRules:
        return self.machine.model.triggers

    def next_timer(self, state: CustomerState | None) -> Timer | None:
        """The customer's next timer, for ``TimerIndex.schedule`` after each apply."""
        return next_timer(self.rules, state)

    def pending_timers(self, state: CustomerState) -> list[Timer]:
        return pending_timers(self.rules, state)

    # -- events

    def apply(
        self, state: CustomerState | None, event: Event, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        """``StageMachine.apply``, then the event rules.

        Timers of this customer due by the event's time fire first (their timer
        messages, when they come, find them fired): a customer's triggers then
        depend on their own events only, not on how busy the partition clock is.
        A duplicate event changes nothing else.
        """
        rules = self.rules
        if not rules.rules:
            return self.machine.apply(state, event, now)
        at_ms = to_ms(event.timestamp)
        early: list[Effect] = []
        if state is not None:
            held = state.triggers is not None and state.triggers.held
            if state.stage in rules.time_by_stage or held:
                first = next_due_ms(rules, state)
                if first is not None and first <= at_ms:
                    state, early = self._catch_up(state, at_ms, now)
        new, effects = self.machine.apply(state, event, now)
        if early:
            effects = [*early, *effects]
        if new is state:  # a duplicate: nothing more
            return new, effects
        memory = start = new.triggers or EMPTY
        policy = self.policy
        is_track = event.type is _TRACK
        unsubscribed, zone, active = memory.unsubscribed, memory.timezone, memory.active_at
        if is_track and event.name in policy.suppress_events:
            unsubscribed = True
        if (
            event.timezone is not None
            and policy.quiet is not None
            and event.timezone != zone
            and valid_timezone(event.timezone)
        ):
            zone = sys.intern(event.timezone)
        stage = new.stage
        if stage in rules.activity_stages:
            model = self.model
            if (not model.activity_events or model.is_activity(event)) and (
                active is None or at_ms > active
            ):
                active = at_ms
        else:
            active = None
        if (
            unsubscribed is not memory.unsubscribed
            or zone is not memory.timezone
            or active != memory.active_at
        ):
            memory = keep_decided(memory, active, memory.fired, memory.held, zone, unsubscribed)

        before = None if state is None else state.stage
        candidates: list[TriggerRule] = []
        if is_track and event.name is not None:
            by_event = rules.by_event.get(event.name)
            if by_event:
                props = event.properties
                for rule in by_event:
                    if rule.stages and before not in rule.stages:
                        continue
                    if all(cond.holds(props) for cond in rule.properties):
                        candidates.append(rule)
        moved = stage != before
        if moved and (rules.on_enter or rules.on_leave):
            candidates.extend(_enter_leave(rules, before, stage))
        if memory.fired and (moved or memory.active_at != start.active_at):
            # The due times fired so far that the move or the activity changed
            # are forgotten (read from the state with its new memory).
            memory = _with_fired(memory, prune_fired(rules, new.with_triggers(memory)))
        if memory is not start:
            new = new.with_triggers(memory)  # one copy of the state for all of the above
        if candidates:
            cause = Cause(message_id=event.message_id)
            new, out = self._fire(new, candidates, cause, event.timestamp, now)
            effects = [*effects, *out]
        return new, effects

    # -- timers

    def apply_timer(
        self, state: CustomerState | None, timer: Timer, now: datetime
    ) -> tuple[CustomerState | None, list[Effect]]:
        """Apply a fired timer. A stale one (the customer moved on, it already fired,
        it is not due yet by ``now``) changes nothing and says why in TimerIgnored."""
        if state is None:
            return None, _ignored(timer, "no such customer in this partition's table")
        if timer.due_ms > to_ms(now):
            return state, _ignored(timer, f"not due yet at {_iso(to_ms(now))}; still pending")
        return self._apply_due(state, timer, now)

    def _catch_up(
        self, state: CustomerState, until_ms: int, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        """Fire the customer's timers due by ``until_ms``, earliest first."""
        out: list[Effect] = []
        for _ in range(_MAX_CATCH_UP):
            timer = next_timer(self.rules, state)
            if timer is None or timer.due_ms > until_ms:
                break
            state, effects = self._apply_due(state, timer, now)
            out.extend(effects)
        return state, out

    def _apply_due(
        self, state: CustomerState, timer: Timer, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        if timer.kind is TimerKind.RELEASE:
            return self._release(state, timer, now)
        rule = self.rules.time_by_name.get(timer.rule)
        memory = state.triggers or EMPTY
        reason: str | None = None
        base = None if rule is None else clock_base(rule, state)
        if rule is None:
            reason = f"model {self.model.key} has no time rule {timer.rule!r}"
        elif (rule.name, timer.due_ms) in memory.fired:
            reason = "already fired for this due time"
        elif base is None:
            reason = (
                f"customer is in stage {state.stage!r}; the rule waits in {sorted(rule.stages)}"
            )
        elif base != timer.generation:
            reason = (
                f"superseded: the rule's clock restarted at {_iso(base)} "
                f"(generation {base}, timer generation {timer.generation})"
            )
        elif base + rule.duration_ms != timer.due_ms:
            reason = f"rescheduled: now due at {_iso(base + rule.duration_ms)}"
        if reason is not None:
            return state, _ignored(timer, reason)
        assert rule is not None

        at = timer.due_at
        cause = Cause(timer_rule=rule.name, timer_due=at)
        memory = _with_fired(memory, (*memory.fired, (rule.name, timer.due_ms)))
        new = state.with_triggers(memory)
        effects: list[Effect] = []
        candidates: list[TriggerRule] = [rule]
        if rule.move_to is not None and rule.move_to != state.stage:
            new, change = self._move(new, rule.move_to, at, rule.name, cause)
            effects.append(change)
            candidates.extend(_enter_leave(self.rules, change.from_stage, change.to_stage))
            memory = _with_fired(memory, prune_fired(self.rules, new))
            if new.stage not in self.rules.activity_stages:
                memory = replace(memory, active_at=None)
            new = new.with_triggers(memory)
        new, out = self._fire(new, candidates, cause, at, now)
        return new, [*effects, *out]

    def _release(
        self, state: CustomerState, timer: Timer, now: datetime
    ) -> tuple[CustomerState, list[Effect]]:
        memory = state.triggers or EMPTY
        due = [h for h in memory.held if h.release_ms <= timer.due_ms]
        if not due:
            return state, _ignored(timer, "no trigger is held until then")
        memory = replace(memory, held=tuple(h for h in memory.held if h.release_ms > timer.due_ms))
        out: list[Effect] = []
        for held in sorted(due, key=lambda h: -h.priority):
            trigger = self._held_trigger(state, held)
            moved_on = self._moved_on(state, memory, held)
            if moved_on is not None:
                memory, decision = supersede(self.policy, memory, trigger, now, moved_on)
            else:
                memory, decision = decide(self.policy, memory, trigger, now, releasing=True)
            out.extend(_emit(decision, trigger))
        return state.with_triggers(memory), out

    def _moved_on(self, state: CustomerState, memory: TriggerMemory, held: Held) -> str | None:
        """Why a held trigger no longer fits the customer, or None if it still does."""
        fired_ms = held.fired_ms
        if state.stage_entered_at is not None and to_ms(state.stage_entered_at) > fired_ms:
            return (
                f"the customer moved to stage {state.stage!r} at "
                f"{_iso(to_ms(state.stage_entered_at))}, after the trigger fired"
            )
        rule = self.rules.time_by_name.get(held.rule)
        if (
            rule is not None
            and rule.kind is TimeKind.INACTIVE
            and memory.active_at is not None
            and memory.active_at > fired_ms
        ):
            return f"the customer was active again at {_iso(memory.active_at)}"
        return None

    def _held_trigger(self, state: CustomerState, held: Held) -> TriggerFired:
        return TriggerFired(
            trigger_id=held.trigger_id,
            type=held.type,
            customer_id=state.customer_id,
            stage=held.stage,
            rule=held.rule,
            fired_at=from_ms(held.fired_ms),
            cause=parse_cause_key(held.cause),
            model=self.model.name,
            model_version=self.model.version,
            priority=held.priority,
        )

    # -- shared

    def _fire(
        self,
        state: CustomerState,
        rules: Iterable[TriggerRule],
        cause: Cause,
        fired_at: datetime,
        now: datetime,
    ) -> tuple[CustomerState, list[Effect]]:
        """Build the triggers of ``rules`` and pass them through the policy, highest
        priority first (file order among equals)."""
        memory = state.triggers or EMPTY
        model = self.model
        out: list[Effect] = []
        for rule in sorted(rules, key=lambda r: -r.priority):
            trigger = TriggerFired(
                trigger_id=trigger_id(model.name, state.customer_id, rule.name, cause),
                type=rule.type,
                customer_id=state.customer_id,
                stage=state.stage,
                rule=rule.name,
                fired_at=fired_at,
                cause=cause,
                model=model.name,
                model_version=model.version,
                priority=rule.priority,
            )
            memory, decision = decide(self.policy, memory, trigger, now)
            out.extend(_emit(decision, trigger))
        return state.with_triggers(memory), out

    def _move(
        self, state: CustomerState, to: str, at: datetime, rule: str, cause: Cause
    ) -> tuple[CustomerState, StageChanged]:
        """A time rule's ``move_to``, recorded like a stage rule's move."""
        visits = dict(state.visits)
        visits[to] = visits.get(to, 0) + 1
        key = cause.key
        history = (*state.history, Move(state.stage, to, at, rule, key))
        moved = replace(
            state,
            stage=to,
            stage_entered_at=at,
            history=history[-self.machine.history_limit :],
            visits=visits,
            active_days_in_stage=0,
            last_active_day=at.toordinal() - 1,
        )
        change = StageChanged(
            customer_id=state.customer_id,
            from_stage=state.stage,
            to_stage=to,
            at=at,
            model=self.model.name,
            model_version=self.model.version,
            rule=rule,
            message_id=key,
            event=TIMER_EVENT,
            visit=visits[to],
            time_in_previous_s=state.time_in_stage_s(at),
        )
        return moved, change


def _enter_leave(rules: TriggerRules, before: str | None, after: str | None) -> list[EventRule]:
    found: list[EventRule] = []
    if before is not None:
        found.extend(rules.on_leave.get(before, ()))
    if after is not None:
        found.extend(rules.on_enter.get(after, ()))
    return found


def _with_fired(memory: TriggerMemory, fired: tuple[tuple[str, int], ...]) -> TriggerMemory:
    """``replace(memory, fired=fired)``, positional: several times cheaper."""
    return keep_decided(
        memory, memory.active_at, fired, memory.held, memory.timezone, memory.unsubscribed
    )


def _ignored(timer: Timer, reason: str) -> list[Effect]:
    return [TimerIgnored(timer.customer_id, timer.rule, timer.due_at, timer.generation, reason)]


def _emit(decision: PolicyDecision, trigger: TriggerFired) -> list[Effect]:
    if decision.outcome is Outcome.SENT:
        return [decision, trigger]
    return [decision]


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat(timespec="seconds").replace("+00:00", "Z")
