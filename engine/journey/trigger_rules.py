"""Trigger rules, the ``triggers`` section of a model file.

Event rules (``"on"``) fire when an event is applied:

- ``{"enter": "at_risk"}`` / ``{"leave": "evaluation"}``: the customer entered or
  left a stage (whatever moved them: a stage rule or a time rule's ``move_to``);
- ``{"event": "NPS Submitted", "properties": {"score": {"lte": 6}}, "in": [...]}``:
  a ``track`` event of that name (or one of a list of names) whose properties
  meet the conditions (see ``conditions.py``); ``in`` optionally limits it to
  customers who were in one of those stages when the event arrived.

Time rules (``"after"``) fire from a timer when a duration has passed:

- ``{"stalled": "7d", "in": ["evaluation"]}``: in one of the stages for 7 days
  without any stage move (the clock starts when the current stage was entered);
- ``{"inactive": "14d", "in": [...]}``: in the set of stages with no product
  activity for 14 days (the clock starts at the later of the last activity event
  and the moment the customer entered the set; moves inside the set keep it
  running; a model without an ``activity`` list counts every event as activity);
- ``{"entered": "30d", "stage": "churned", "while": [...]}``: 30 days after the
  customer entered ``stage``, provided every move since stayed within ``while``
  (default: ``stage`` alone, i.e. the customer is still there). A ``while`` wider
  than the stage makes a follow-up that survives progress ("7 days after the
  purchase, wherever the customer is now on the paying side").

Every rule has a ``name``, a ``type`` (nurture, churn-risk, win-back,
advocacy-ask) and a ``priority`` (higher wins when the daily cap bites; default by
type). A time rule may move the customer to another stage (``move_to``); event
rules move customers only through the model's stage rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from engine.journey.conditions import PropertyCondition, parse_property_conditions
from engine.journey.durations import format_duration, parse_duration
from engine.journey.errors import ModelError


class TriggerType(StrEnum):
    """What marketing automation should do; one output topic per type."""

    NURTURE = "nurture"
    CHURN_RISK = "churn-risk"
    WIN_BACK = "win-back"
    ADVOCACY_ASK = "advocacy-ask"


DEFAULT_PRIORITY: Mapping[TriggerType, int] = {
    TriggerType.CHURN_RISK: 90,
    TriggerType.WIN_BACK: 60,
    TriggerType.NURTURE: 30,
    TriggerType.ADVOCACY_ASK: 20,
}
"""Priority of a rule that names none: churn risk beats win-back beats nurture."""


class EventOn(StrEnum):
    ENTER = "enter"
    LEAVE = "leave"
    EVENT = "event"


class TimeKind(StrEnum):
    STALLED = "stalled"
    INACTIVE = "inactive"
    ENTERED = "entered"


@dataclass(frozen=True, slots=True)
class EventRule:
    """Fires while an event is applied. ``stages`` (for ``event`` rules) limits it to
    customers in one of those stages before the event; empty = any stage."""

    name: str
    type: TriggerType
    priority: int
    on: EventOn
    stage: str | None = None
    events: frozenset[str] = frozenset()
    properties: tuple[PropertyCondition, ...] = ()
    stages: frozenset[str] = frozenset()
    description: str = ""


@dataclass(frozen=True, slots=True)
class TimeRule:
    """Fires from a timer ``duration_ms`` after its clock started.

    ``stages``: where the rule applies (``in`` of stalled/inactive, ``while`` of
    entered). ``stage``: the stage whose entry starts an ``entered`` clock.
    """

    name: str
    type: TriggerType
    priority: int
    kind: TimeKind
    duration_ms: int
    stages: frozenset[str]
    stage: str | None = None
    move_to: str | None = None
    description: str = ""


TriggerRule = EventRule | TimeRule


@dataclass(frozen=True, slots=True)
class TriggerRules:
    """The compiled trigger rules of a model, indexed so that applying an event
    looks at the rules for that event name and stage only."""

    rules: tuple[TriggerRule, ...] = ()
    by_event: Mapping[str, tuple[EventRule, ...]] = field(default_factory=dict)
    on_enter: Mapping[str, tuple[EventRule, ...]] = field(default_factory=dict)
    on_leave: Mapping[str, tuple[EventRule, ...]] = field(default_factory=dict)
    time_by_stage: Mapping[str, tuple[TimeRule, ...]] = field(default_factory=dict)
    time_by_name: Mapping[str, TimeRule] = field(default_factory=dict)
    activity_stages: frozenset[str] = frozenset()
    """Stages where an ``inactive`` rule applies: activity is remembered there only."""

    @classmethod
    def compile(cls, rules: tuple[TriggerRule, ...]) -> TriggerRules:
        by_event: dict[str, list[EventRule]] = {}
        on_enter: dict[str, list[EventRule]] = {}
        on_leave: dict[str, list[EventRule]] = {}
        by_stage: dict[str, list[TimeRule]] = {}
        activity: set[str] = set()
        for rule in rules:
            if isinstance(rule, TimeRule):
                for stage in sorted(rule.stages):
                    by_stage.setdefault(stage, []).append(rule)
                if rule.kind is TimeKind.INACTIVE:
                    activity |= rule.stages
            elif rule.on is EventOn.EVENT:
                for name in sorted(rule.events):
                    by_event.setdefault(name, []).append(rule)
            else:
                target = on_enter if rule.on is EventOn.ENTER else on_leave
                assert rule.stage is not None
                target.setdefault(rule.stage, []).append(rule)
        return cls(
            rules=rules,
            by_event={k: tuple(v) for k, v in by_event.items()},
            on_enter={k: tuple(v) for k, v in on_enter.items()},
            on_leave={k: tuple(v) for k, v in on_leave.items()},
            time_by_stage={k: tuple(v) for k, v in by_stage.items()},
            time_by_name={r.name: r for r in rules if isinstance(r, TimeRule)},
            activity_stages=frozenset(activity),
        )

    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def with_durations(self, overrides: Mapping[str, int]) -> TriggerRules:
        """The same rules with the durations of the named time rules replaced
        (milliseconds, e.g. from :func:`parse_duration_overrides`)."""
        for name, ms in overrides.items():
            rule = next((r for r in self.rules if r.name == name), None)
            if rule is None:
                raise ModelError(
                    f"trigger durations: no trigger rule {name!r}; rules: {self.names()}"
                )
            if not isinstance(rule, TimeRule):
                raise ModelError(
                    f"trigger durations: {name!r} is an event rule; only time rules have a duration"
                )
            if ms <= 0:
                raise ModelError(f"trigger durations: {name!r} must be longer than zero")
        return TriggerRules.compile(
            tuple(
                replace(r, duration_ms=overrides[r.name])
                if isinstance(r, TimeRule) and r.name in overrides
                else r
                for r in self.rules
            )
        )

    def describe_durations(self) -> dict[str, str]:
        return {r.name: format_duration(r.duration_ms) for r in self.time_by_name.values()}


NO_TRIGGERS = TriggerRules()

_RULE_KEYS = frozenset({"name", "type", "priority", "on", "after", "move_to", "description"})
_ON_KEYS = frozenset({"enter", "leave", "event", "properties", "in"})
_AFTER_KEYS = frozenset({"stalled", "inactive", "entered", "in", "stage", "while"})


def _fail(where: str, message: str) -> ModelError:
    return ModelError(f"{where}: {message}")


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {sorted(allowed)}")


def _stage(value: Any, where: str, stages: Mapping[str, object]) -> str:
    if not isinstance(value, str) or value not in stages:
        raise _fail(where, f"unknown stage {value!r}; stages: {sorted(stages)}")
    return value


def _stage_list(value: Any, where: str, stages: Mapping[str, object]) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "must be a non-empty list of stages")
    return frozenset(_stage(v, where, stages) for v in value)


def _parse_on(
    raw: Any, where: str, head: dict[str, Any], stages: Mapping[str, object]
) -> EventRule:
    if not isinstance(raw, dict):
        raise _fail(where, 'must be an object such as {"event": "Payment Failed"}')
    _check_keys(raw, _ON_KEYS, where)
    kinds = [k for k in ("enter", "leave", "event") if k in raw]
    if len(kinds) != 1:
        raise _fail(where, "needs exactly one of enter, leave, event")
    on = EventOn(kinds[0])
    if on is not EventOn.EVENT:
        for extra in ("properties", "in"):
            if extra in raw:
                raise _fail(f"{where}.{extra}", f"applies to event rules only, not to {on.value}")
        return EventRule(**head, on=on, stage=_stage(raw[on.value], f"{where}.{on.value}", stages))
    names = raw["event"]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _fail(f"{where}.event", "must be an event name or a non-empty list of names")
    props = parse_property_conditions(raw.get("properties", {}), f"{where}.properties")
    in_stages = _stage_list(raw["in"], f"{where}.in", stages) if "in" in raw else frozenset()
    return EventRule(**head, on=on, events=frozenset(names), properties=props, stages=in_stages)


def _parse_after(
    raw: Any, where: str, head: dict[str, Any], stages: Mapping[str, object]
) -> TimeRule:
    if not isinstance(raw, dict):
        raise _fail(where, 'must be an object such as {"stalled": "7d", "in": ["evaluation"]}')
    _check_keys(raw, _AFTER_KEYS, where)
    kinds = [k for k in ("stalled", "inactive", "entered") if k in raw]
    if len(kinds) != 1:
        raise _fail(where, "needs exactly one of stalled, inactive, entered")
    kind = TimeKind(kinds[0])
    duration = parse_duration(raw[kind.value], f"{where}.{kind.value}")
    if kind is TimeKind.ENTERED:
        if "in" in raw:
            raise _fail(f"{where}.in", "an entered rule names its stage and optional while")
        stage = _stage(raw.get("stage"), f"{where}.stage", stages)
        within = (
            _stage_list(raw["while"], f"{where}.while", stages)
            if "while" in raw
            else frozenset({stage})
        )
        if stage not in within:
            raise _fail(f"{where}.while", f"must include the entered stage {stage!r}")
        return TimeRule(**head, kind=kind, duration_ms=duration, stages=within, stage=stage)
    for extra in ("stage", "while"):
        if extra in raw:
            raise _fail(f"{where}.{extra}", f"applies to entered rules only, not to {kind.value}")
    if "in" not in raw:
        raise _fail(f"{where}.in", "is required: the stages where the rule applies")
    return TimeRule(
        **head,
        kind=kind,
        duration_ms=duration,
        stages=_stage_list(raw["in"], f"{where}.in", stages),
    )


def _parse_rule(raw: Any, where: str, stages: Mapping[str, object]) -> TriggerRule:
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object")
    _check_keys(raw, _RULE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(f"{where}.name", "must be an identifier such as 'trial_stalled'")
    try:
        kind = TriggerType(str(raw.get("type")))
    except ValueError:
        raise _fail(
            f"{where}.type",
            f"unknown trigger type {raw.get('type')!r}; use {[t.value for t in TriggerType]}",
        ) from None
    priority = raw.get("priority", DEFAULT_PRIORITY[kind])
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 1000:
        raise _fail(f"{where}.priority", "must be a whole number from 0 to 1000")
    head: dict[str, Any] = {
        "name": name,
        "type": kind,
        "priority": priority,
        "description": str(raw.get("description", "")),
    }
    if ("on" in raw) == ("after" in raw):
        raise _fail(where, 'needs exactly one of "on" (event rule) or "after" (time rule)')
    if "on" in raw:
        if "move_to" in raw:
            raise _fail(
                f"{where}.move_to", "is for time rules; events move stages through the stage rules"
            )
        return _parse_on(raw["on"], f"{where}.on", head, stages)
    rule = _parse_after(raw["after"], f"{where}.after", head, stages)
    if "move_to" in raw:
        move_to = _stage(raw["move_to"], f"{where}.move_to", stages)
        if move_to in rule.stages and rule.kind is not TimeKind.ENTERED:
            raise _fail(f"{where}.move_to", f"{move_to!r} is one of the stages the rule waits in")
        rule = replace(rule, move_to=move_to)
    return rule


def parse_triggers(raw: Any, where: str, stages: Mapping[str, object]) -> TriggerRules:
    """Validate and compile the ``triggers`` list of a model file."""
    if raw is None:
        return NO_TRIGGERS
    if not isinstance(raw, list):
        raise _fail(where, "must be a list of trigger rules")
    rules: list[TriggerRule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        rule = _parse_rule(item, f"{where}[{i}]", stages)
        if rule.name in seen:
            raise _fail(f"{where}[{i}].name", f"duplicate trigger rule name {rule.name!r}")
        seen.add(rule.name)
        rules.append(rule)
    return TriggerRules.compile(tuple(rules))
