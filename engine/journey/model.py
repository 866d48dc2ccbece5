"""Lifecycle models: stages and the rules that move customers between them.

A model is a JSON data file (see ``presets/``), validated on load. Rules are tried
in file order; the first rule whose ``from`` holds the customer's current stage and
whose ``when`` matches the event moves the customer to its ``to`` stage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from engine.journey.conditions import PropertyCondition, parse_property_conditions
from engine.journey.errors import ModelError
from engine.journey.events import Event, EventType
from engine.journey.trigger_rules import NO_TRIGGERS, TriggerRules, parse_triggers

NEW = None
"""The stage of a customer the engine has not seen yet; written ``null`` in ``from``."""

_RULE_KEYS = frozenset({"name", "to", "from", "when", "late", "description"})
_WHEN_KEYS = frozenset({"types", "events", "activity", "properties", "min_active_days_in_stage"})
_STAGE_KEYS = frozenset({"name", "description", "paying"})
_MODEL_KEYS = frozenset(
    {"name", "version", "description", "stages", "path", "activity", "rules", "triggers"}
)
_TRACK = EventType.TRACK  # looked up once: a class attribute lookup on an enum is slow


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    description: str = ""
    paying: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One allowed move. ``sources`` holds stage names, and None for a new customer."""

    name: str
    to: str
    sources: frozenset[str | None]
    types: frozenset[EventType] = frozenset()
    events: frozenset[str] = frozenset()
    activity: bool = False
    properties: tuple[PropertyCondition, ...] = ()
    min_active_days_in_stage: int = 0
    late: bool = False
    description: str = ""

    def matches(self, event: Event, is_activity: bool, active_days: int) -> bool:
        """Whether the event (and the customer's activity count) satisfies ``when``."""
        if self.types and event.type not in self.types:
            return False
        if self.events and (event.type is not EventType.TRACK or event.name not in self.events):
            return False
        if self.activity and not is_activity:
            return False
        if active_days < self.min_active_days_in_stage:
            return False
        return all(cond.holds(event.properties) for cond in self.properties)


@dataclass(frozen=True, slots=True)
class LifecycleModel:
    name: str
    version: int
    stages: Mapping[str, Stage]
    path: tuple[str, ...]
    activity_events: frozenset[str]
    rules: tuple[Rule, ...]
    description: str = ""
    triggers: TriggerRules = NO_TRIGGERS
    _index: dict[tuple[str | None, EventType, str], tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Every event name a rule or the activity list mentions: any other name selects
    # the same rules as no name, so the index stays bounded whatever names arrive.
    _names: frozenset[str] = field(init=False, compare=False, repr=False)
    _ranks: Mapping[str, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = set(self.activity_events)
        for rule in self.rules:
            names |= rule.events
        ranks: dict[str, int] = {}
        for i, stage in enumerate(self.path):
            ranks.setdefault(stage, i)
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_ranks", ranks)

    @property
    def key(self) -> str:
        """``name@version``, recorded on every state and stage change."""
        return f"{self.name}@{self.version}"

    def rank(self, stage: str | None) -> int | None:
        """Position of a stage on the main path; None for off-path stages."""
        if stage is None:
            return -1
        return self._ranks.get(stage)

    def is_activity(self, event: Event) -> bool:
        return event.type is _TRACK and event.name in self.activity_events

    def candidates(self, stage: str | None, event: Event) -> tuple[Rule, ...]:
        """The rules that could fire for this event from this stage, in file order.

        A candidate's ``types``, ``events`` and ``activity`` conditions hold for the
        event; what :meth:`Rule.matches` checks beyond them (properties, active days)
        is left to the caller.
        """
        etype = event.type
        name = event.name
        key = name if etype is _TRACK and name in self._names else ""
        found = self._index.get((stage, etype, key))
        if found is None:
            found = tuple(
                r
                for r in self.rules
                if stage in r.sources
                and r.to != stage
                and (not r.types or etype in r.types)
                and (not r.events or key in r.events)
                and (not r.activity or key in self.activity_events)
            )
            self._index[stage, etype, key] = found
        return found


def _fail(where: str, message: str) -> ModelError:
    return ModelError(f"{where}: {message}")


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, "must be a list of non-empty strings")
    return list(value)


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {sorted(allowed)}")


def _parse_stage(raw: Any, where: str) -> Stage:
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object")
    _check_keys(raw, _STAGE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(f"{where}.name", "must be an identifier such as 'at_risk'")
    paying = raw.get("paying", False)
    if not isinstance(paying, bool):
        raise _fail(f"{where}.paying", "must be true or false")
    return Stage(name=name, description=str(raw.get("description", "")), paying=paying)


def _parse_rule(raw: Any, where: str, stages: Mapping[str, Stage]) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "must be an object")
    _check_keys(raw, _RULE_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(f"{where}.name", "is required")
    to = raw.get("to")
    if not isinstance(to, str) or to not in stages:
        raise _fail(f"{where}.to", f"unknown stage {to!r}; stages: {sorted(stages)}")
    raw_from = raw.get("from", "*")
    sources: set[str | None]
    if raw_from == "*":
        sources = {None, *stages}
    elif isinstance(raw_from, list) and raw_from:
        sources = set()
        for item in raw_from:
            if item is not None and (not isinstance(item, str) or item not in stages):
                raise _fail(f"{where}.from", f"unknown stage {item!r}")
            sources.add(item)
    else:
        raise _fail(f"{where}.from", "must be '*' or a non-empty list of stages (null = new)")
    when = raw.get("when")
    if not isinstance(when, dict) or not when:
        raise _fail(f"{where}.when", "is required")
    _check_keys(when, _WHEN_KEYS, f"{where}.when")
    types: set[EventType] = set()
    for t in _str_list(when.get("types", []), f"{where}.when.types"):
        try:
            types.add(EventType(t))
        except ValueError:
            raise _fail(f"{where}.when.types", f"unknown type {t!r}") from None
    events = frozenset(_str_list(when.get("events", []), f"{where}.when.events"))
    activity = when.get("activity", False)
    if not isinstance(activity, bool):
        raise _fail(f"{where}.when.activity", "must be true or false")
    if not (types or events or activity):
        raise _fail(f"{where}.when", "needs at least one of types, events, activity")
    min_days = when.get("min_active_days_in_stage", 0)
    if not isinstance(min_days, int) or isinstance(min_days, bool) or min_days < 0:
        raise _fail(f"{where}.when.min_active_days_in_stage", "must be a whole number >= 0")
    late = raw.get("late", False)
    if not isinstance(late, bool):
        raise _fail(f"{where}.late", "must be true or false")
    props = parse_property_conditions(when.get("properties", {}), f"{where}.when.properties")
    return Rule(
        name=name,
        to=to,
        sources=frozenset(sources),
        types=frozenset(types),
        events=events,
        activity=activity,
        properties=props,
        min_active_days_in_stage=min_days,
        late=late,
        description=str(raw.get("description", "")),
    )


def parse_model(raw: Any, source: str = "<model>") -> LifecycleModel:
    """Build and validate a model from its decoded JSON document."""
    if not isinstance(raw, dict):
        raise _fail(source, "a model must be a JSON object")
    _check_keys(raw, _MODEL_KEYS, source)
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise _fail(f"{source}: name", "must be an identifier")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(f"{source}: version", "must be a whole number >= 1")
    raw_stages = raw.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise _fail(f"{source}: stages", "must be a non-empty list")
    stages: dict[str, Stage] = {}
    for i, item in enumerate(raw_stages):
        stage = _parse_stage(item, f"{source}: stages[{i}]")
        if stage.name in stages:
            raise _fail(f"{source}: stages[{i}]", f"duplicate stage {stage.name!r}")
        stages[stage.name] = stage
    path = _str_list(raw.get("path", []), f"{source}: path")
    for p in path:
        if p not in stages:
            raise _fail(f"{source}: path", f"unknown stage {p!r}")
    if len(set(path)) != len(path):
        raise _fail(f"{source}: path", "lists a stage twice")
    activity = frozenset(_str_list(raw.get("activity", []), f"{source}: activity"))
    raw_rules = raw.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _fail(f"{source}: rules", "must be a non-empty list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw_rules):
        rule = _parse_rule(item, f"{source}: rules[{i}]", stages)
        if rule.name in seen:
            raise _fail(f"{source}: rules[{i}].name", f"duplicate rule name {rule.name!r}")
        if rule.activity and not activity:
            raise _fail(f"{source}: rules[{i}].when.activity", "the model lists no activity")
        seen.add(rule.name)
        rules.append(rule)
    reachable = {r.to for r in rules}
    unreachable = sorted(set(stages) - reachable)
    if unreachable:
        raise _fail(f"{source}: stages", f"no rule leads to {', '.join(unreachable)}")
    if not any(None in r.sources for r in rules):
        raise _fail(f"{source}: rules", "no rule accepts a new customer (from: null)")
    return LifecycleModel(
        name=name,
        version=version,
        stages=stages,
        path=tuple(path),
        activity_events=activity,
        rules=tuple(rules),
        description=str(raw.get("description", "")),
        triggers=parse_triggers(raw.get("triggers"), f"{source}: triggers", stages),
    )


def load_model(path: str | Path) -> LifecycleModel:
    """Read and validate a model file."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{p}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{p}: not valid JSON: {exc}") from exc
    return parse_model(raw, str(p))


def preset_names() -> Sequence[str]:
    folder = resources.files("engine.journey") / "presets"
    return sorted(
        f.name.removesuffix(".json") for f in folder.iterdir() if f.name.endswith(".json")
    )


def load_preset(name: str) -> LifecycleModel:
    """Load a bundled model by name (``saas``, ``aida``, ``b2b``, ``freemium``)."""
    if name not in preset_names():
        raise ModelError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    text = (resources.files("engine.journey") / "presets" / f"{name}.json").read_text("utf-8")
    return parse_model(json.loads(text), f"preset {name}")


def with_trigger_durations(model: LifecycleModel, overrides: Mapping[str, int]) -> LifecycleModel:
    """The model with the named time rules' durations replaced (milliseconds, e.g.
    from ``durations.parse_duration_overrides``); ModelError names an unknown rule
    or an event rule."""
    if not overrides:
        return model
    return replace(model, triggers=model.triggers.with_durations(overrides))


def resolve_model(spec: str) -> LifecycleModel:
    """A preset name, or a path to a model file."""
    if spec.endswith(".json") or "/" in spec:
        return load_model(spec)
    return load_preset(spec)
