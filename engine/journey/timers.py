"""Timers derived from the customer state.

A customer's pending timers are not stored: they follow from the state. Each time
rule that applies to the customer's stage has a clock that started at a *base*
instant (the stage entry, the entry into a set of stages, or the last activity);
the timer is due ``duration`` after it. The base is the timer's **generation**:
a newer event that restarts the clock (new activity, a stage move) gives a new
base, so a timer of an older generation that comes back is stale and does
nothing. A due time that already fired is remembered in ``TriggerMemory.fired``,
so the same timer never fires twice.

Held triggers (quiet hours) add one release timer each (kind ``release``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.journey.errors import StateError
from engine.journey.state import CustomerState, Move, from_ms, to_ms
from engine.journey.trigger_rules import TimeKind, TimeRule, TriggerRules
from engine.journey.trigger_state import TriggerMemory


class TimerKind(StrEnum):
    RULE = "rule"
    """A time rule's timer: fires the rule."""
    RELEASE = "release"
    """Quiet hours ended: releases the customer's held triggers due by then."""


@dataclass(frozen=True, slots=True)
class Timer:
    """One due time of one customer, as scheduled and as fired on the timer topic.

    ``generation`` is the base of the rule's clock (epoch ms) for a rule timer, and
    0 for a release timer.
    """

    customer_id: str
    rule: str
    due_ms: int
    generation: int
    kind: TimerKind = TimerKind.RULE

    @property
    def due_at(self) -> datetime:
        return from_ms(self.due_ms)


def _set_entry_ms(state: CustomerState, stages: frozenset[str]) -> int:
    """When the customer entered the set ``stages`` they are in now (moves inside
    the set keep the clock). With a truncated history, the oldest known move: a
    later instant than the truth, so the timer fires late rather than early."""
    history = state.history
    for move in reversed(history):
        if move.from_stage not in stages:
            return to_ms(move.at)
    if history:
        return to_ms(history[0].at)
    assert state.stage_entered_at is not None
    return to_ms(state.stage_entered_at)


def _stage_entry_ms(state: CustomerState, stage: str, within: frozenset[str]) -> int | None:
    """When the customer last entered ``stage``, if every move since stayed within
    ``within``; None otherwise or when the history no longer reaches that far."""
    if state.stage == stage:
        assert state.stage_entered_at is not None
        return to_ms(state.stage_entered_at)
    for move in reversed(state.history):
        if move.to_stage == stage:
            return to_ms(move.at)
        if move.from_stage not in within:
            return None
    return None


def clock_base(rule: TimeRule, state: CustomerState) -> int | None:
    """Where the rule's clock started for this customer (its generation), or None
    when the rule does not apply to the customer's current stage."""
    if state.stage_entered_at is None:
        return None
    return _base(rule, state, to_ms(state.stage_entered_at))


def _base(rule: TimeRule, state: CustomerState, stage_ms: int) -> int | None:
    stage = state.stage
    if stage is None or stage not in rule.stages:
        return None
    kind = rule.kind
    if kind is _STALLED:
        return stage_ms
    if kind is _INACTIVE:
        entry = _set_entry_ms(state, rule.stages)
        memory = state.triggers
        active = None if memory is None else memory.active_at
        return entry if active is None or active < entry else active
    assert rule.stage is not None
    return _stage_entry_ms(state, rule.stage, rule.stages)


def rule_due(rule: TimeRule, state: CustomerState) -> int | None:
    """The rule's due time for this customer (fired or not), or None."""
    base = clock_base(rule, state)
    return None if base is None else base + rule.duration_ms


_RULE, _RELEASE = 0, 1
_STALLED, _INACTIVE = TimeKind.STALLED, TimeKind.INACTIVE


def _candidates(rules: TriggerRules, state: CustomerState) -> Iterator[tuple[int, int, str, int]]:
    """(due ms, 0 for a rule / 1 for a release, rule, generation) of each pending
    timer; plain tuples, so that finding the earliest builds one Timer only."""
    memory = state.triggers
    entered = state.stage_entered_at
    if entered is not None and state.stage is not None:
        time_rules = rules.time_by_stage.get(state.stage)
        if time_rules:
            stage_ms = to_ms(entered)
            fired = () if memory is None else memory.fired
            for rule in time_rules:
                base = _base(rule, state, stage_ms)
                if base is None:
                    continue
                due = base + rule.duration_ms
                if fired and (rule.name, due) in fired:
                    continue
                yield due, _RULE, rule.name, base
    if memory is not None:
        for held in memory.held:
            yield held.release_ms, _RELEASE, held.rule, 0


def _timer(state: CustomerState, found: tuple[int, int, str, int]) -> Timer:
    due, kind, rule, generation = found
    return Timer(
        state.customer_id, rule, due, generation, TimerKind.RELEASE if kind else TimerKind.RULE
    )


def pending_timers(rules: TriggerRules, state: CustomerState) -> list[Timer]:
    """Every timer this customer is waiting for, earliest first."""
    return [_timer(state, found) for found in sorted(_candidates(rules, state))]


def _earliest(rules: TriggerRules, state: CustomerState) -> tuple[int, int, str, int] | None:
    """``min(_candidates(rules, state))`` without the generator: it runs after
    every event, for the catch-up check and for the timer index."""
    best: tuple[int, int, str, int] | None = None
    memory = state.triggers
    stage, entered = state.stage, state.stage_entered_at
    if entered is not None and stage is not None:
        time_rules = rules.time_by_stage.get(stage)
        if time_rules:
            stage_ms = to_ms(entered)
            fired = () if memory is None else memory.fired
            for rule in time_rules:
                base = stage_ms if rule.kind is _STALLED else _base(rule, state, stage_ms)
                if base is None:
                    continue
                due = base + rule.duration_ms
                if fired and (rule.name, due) in fired:
                    continue
                found = (due, _RULE, rule.name, base)
                if best is None or found < best:
                    best = found
    if memory is not None and memory.held:
        for held in memory.held:
            found = (held.release_ms, _RELEASE, held.rule, 0)
            if best is None or found < best:
                best = found
    return best


def next_timer(rules: TriggerRules, state: CustomerState | None) -> Timer | None:
    """The earliest pending timer: the one entry the customer has in a TimerIndex."""
    if state is None:
        return None
    found = _earliest(rules, state)
    return None if found is None else _timer(state, found)


def next_due_ms(rules: TriggerRules, state: CustomerState) -> int | None:
    """The due time of :func:`next_timer`, without building it."""
    found = _earliest(rules, state)
    return None if found is None else found[0]


def prune_fired(rules: TriggerRules, state: CustomerState) -> tuple[tuple[str, int], ...]:
    """The entries of ``fired`` that could still come due again: those whose rule
    still gives the same due time. The others can be forgotten."""
    memory = state.triggers
    if memory is None or not memory.fired:
        return ()
    keep = []
    for name, due in memory.fired:
        rule = rules.time_by_name.get(name)
        if rule is not None and rule_due(rule, state) == due:
            keep.append((name, due))
    return tuple(keep)


def history_stages(rules: TriggerRules) -> frozenset[str]:
    """Stages where a time rule's clock may start before the current stage was
    entered, so that finding it reads the stage history: those of ``inactive``
    rules (the entry into the set), and those of ``entered`` rules other than the
    stage whose entry starts the clock."""
    found: set[str] = set()
    for rule in rules.time_by_name.values():
        if rule.kind is _INACTIVE:
            found |= rule.stages
        elif rule.kind is TimeKind.ENTERED:
            found |= rule.stages - {rule.stage}
    return frozenset(found)


def timer_view(
    raw: Mapping[str, Any], rules: TriggerRules, with_history: frozenset[str] | None = None
) -> CustomerState:
    """What timers follow from, out of a stored record (``CustomerState.to_dict``).

    For rebuilding a timer index from a table: the customer id, model, stage,
    stage entry and ``last_seen`` always; the trigger memory when a time rule
    applies to the stage or triggers are held (otherwise the customer has no
    timer), and the history in the stages ``with_history`` (default:
    :func:`history_stages`). The touches, visits and dedupe ids are not read, so
    this is several times faster than ``from_dict``, and ``next_timer`` of the view
    is that of the whole record. Raises StateError on a record it cannot read.
    """
    if not isinstance(raw, Mapping) or raw.get("v") != 1:
        version = raw.get("v") if isinstance(raw, Mapping) else type(raw).__name__
        raise StateError(f"unsupported state record version {version!r}")
    if with_history is None:
        with_history = history_stages(rules)
    try:
        stage, se, ls, tr = raw["s"], raw["se"], raw["ls"], raw.get("tr")
        timed = stage in rules.time_by_stage or (tr is not None and bool(tr.get("h")))
        history = (
            tuple(Move(h[0], h[1], from_ms(h[2]), h[3], h[4]) for h in raw["h"])
            if timed and stage in with_history
            else ()
        )
        return CustomerState(
            customer_id=str(raw["id"]),
            model=str(raw["m"]),
            model_version=int(raw["mv"]),
            stage=stage,
            stage_entered_at=None if se is None else from_ms(se),
            last_seen=None if ls is None else from_ms(ls),
            history=history,
            triggers=TriggerMemory.from_dict(tr) if timed and tr is not None else None,
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise StateError(f"malformed customer state record: {exc!r}") from exc
