"""The ``triggers`` section of model files: parsing, indexes, durations, validation errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.journey import ModelError, load_preset, preset_names, with_trigger_durations
from engine.journey.durations import format_duration, parse_duration, parse_duration_overrides
from engine.journey.model import parse_model
from engine.journey.trigger_rules import EventOn, EventRule, TimeKind, TimeRule, TriggerType

PRESETS_DIR = Path(__file__).resolve().parents[2] / "engine" / "journey" / "presets"
DAY = 86_400_000


def model() -> dict[str, Any]:
    return {
        "name": "mini",
        "version": 1,
        "stages": [{"name": "a"}, {"name": "b"}, {"name": "c", "paying": True}, {"name": "d"}],
        "activity": ["Signed In"],
        "rules": [
            {"name": "r0", "to": "a", "from": [None], "when": {"types": ["page"]}},
            {"name": "r1", "to": "b", "from": ["a"], "when": {"events": ["Signed Up"]}},
            {"name": "r2", "to": "c", "from": ["b"], "when": {"events": ["Order Completed"]}},
            {"name": "r3", "to": "d", "from": ["c"], "when": {"events": ["Cancelled"]}},
        ],
        "triggers": [
            {"name": "stalled_b", "type": "nurture", "after": {"stalled": "7d", "in": ["b"]}},
            {
                "name": "idle",
                "type": "churn-risk",
                "after": {"inactive": "14d", "in": ["c"]},
                "move_to": "d",
            },
            {"name": "gone", "type": "win-back", "after": {"entered": "30d", "stage": "d"}},
            {
                "name": "follow_up",
                "type": "advocacy-ask",
                "priority": 5,
                "after": {"entered": "2d", "stage": "b", "while": ["b", "c"]},
            },
            {
                "name": "fan",
                "type": "advocacy-ask",
                "on": {"event": "NPS Submitted", "properties": {"score": {"gte": 9}}, "in": ["c"]},
            },
            {"name": "either", "type": "nurture", "on": {"event": ["X", "Y"]}},
            {"name": "welcome", "type": "nurture", "on": {"enter": "b"}},
            {"name": "left_c", "type": "churn-risk", "on": {"leave": "c"}},
        ],
    }


def test_rules_parse_into_event_and_time_rules() -> None:
    rules = parse_model(model(), "mini.json").triggers
    assert rules.names() == [
        "stalled_b",
        "idle",
        "gone",
        "follow_up",
        "fan",
        "either",
        "welcome",
        "left_c",
    ]
    assert rules.time_by_name["idle"] == TimeRule(
        name="idle",
        type=TriggerType.CHURN_RISK,
        priority=90,  # the churn-risk default
        kind=TimeKind.INACTIVE,
        duration_ms=14 * DAY,
        stages=frozenset({"c"}),
        move_to="d",
    )
    gone = rules.time_by_name["gone"]
    assert (gone.kind, gone.stage, gone.stages, gone.priority) == (
        TimeKind.ENTERED,
        "d",
        frozenset({"d"}),
        60,
    )
    assert rules.time_by_name["follow_up"].stages == frozenset({"b", "c"})
    fan = rules.by_event["NPS Submitted"][0]
    assert isinstance(fan, EventRule)
    assert (fan.on, fan.stages, fan.priority) == (EventOn.EVENT, frozenset({"c"}), 20)
    assert fan.properties[0].holds({"score": 9})
    assert not fan.properties[0].holds({"score": 8})


def test_indexes_look_up_rules_by_event_stage_and_name() -> None:
    rules = parse_model(model(), "mini.json").triggers
    assert [r.name for r in rules.by_event["X"]] == ["either"]
    assert [r.name for r in rules.by_event["Y"]] == ["either"]
    assert "Signed Up" not in rules.by_event
    assert [r.name for r in rules.on_enter["b"]] == ["welcome"]
    assert [r.name for r in rules.on_leave["c"]] == ["left_c"]
    assert {s: [r.name for r in rs] for s, rs in rules.time_by_stage.items()} == {
        "b": ["stalled_b", "follow_up"],
        "c": ["idle", "follow_up"],
        "d": ["gone"],
    }
    assert rules.activity_stages == frozenset({"c"})


def test_a_model_without_triggers_has_none() -> None:
    raw = model()
    del raw["triggers"]
    rules = parse_model(raw, "mini.json").triggers
    assert rules.rules == ()
    assert rules.by_event == {}


@pytest.mark.parametrize("name", preset_names())
def test_preset_triggers_are_documented_and_typed(name: str) -> None:
    rules = load_preset(name).triggers
    assert rules.rules, f"{name} has trigger rules"
    for rule in rules.rules:
        assert rule.description, f"{name}: trigger {rule.name} has no description"
        assert rule.type in TriggerType
    raw = json.loads((PRESETS_DIR / f"{name}.json").read_text("utf-8"))
    assert rules.names() == [r["name"] for r in raw["triggers"]]


def test_saas_defaults_are_the_issue_s_rules() -> None:
    rules = load_preset("saas").triggers
    time = {
        n: (r.type.value, r.kind.value, r.duration_ms // DAY) for n, r in rules.time_by_name.items()
    }
    assert time == {
        "trial_stalled": ("nurture", "stalled", 7),
        "onboarding_stalled": ("nurture", "inactive", 3),
        "inactive": ("churn-risk", "inactive", 14),
        "churned_30d": ("win-back", "entered", 30),
    }
    assert rules.time_by_name["inactive"].move_to == "at_risk"
    paying = {s.name for s in load_preset("saas").stages.values() if s.paying}
    assert rules.time_by_name["inactive"].stages == paying - {"at_risk"}
    assert [(r.name, r.type.value) for r in rules.by_event["NPS Submitted"]] == [
        ("detractor", "churn-risk"),
        ("promoter", "advocacy-ask"),
    ]
    assert [(r.name, r.type.value) for r in rules.by_event["Payment Failed"]] == [
        ("payment_failed", "churn-risk")
    ]


# ---------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("36h", 36 * 3_600_000),
        ("90m", 90 * 60_000),
        ("45s", 45_000),
        ("1d12h", DAY + 12 * 3_600_000),
        ("1h30m15s", 5_415_000),
    ],
)
def test_durations_parse(text: str, ms: int) -> None:
    assert parse_duration(text, "x") == ms


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("7", r"must be a duration such as"),
        ("7 d", r"must be a duration such as"),
        ("-1d", r"must be a duration such as"),
        ("1.5d", r"must be a duration such as"),
        (7, r"must be a duration such as"),
        ("0d", r"must be longer than zero"),
        ("12h1d", r"units must go from largest to smallest"),
        ("1d1d", r"units must go from largest to smallest"),
    ],
)
def test_bad_durations_are_named(text: Any, match: str) -> None:
    with pytest.raises(ModelError, match=rf"^where: {match}"):
        parse_duration(text, "where")


def test_format_duration_is_the_short_form() -> None:
    assert [format_duration(ms) for ms in (DAY, 36 * 3_600_000, 90_000, 1500)] == [
        "1d",
        "1d12h",
        "1m30s",
        "1500ms",
    ]


def test_duration_overrides_parse_and_apply() -> None:
    overrides = parse_duration_overrides(" inactive=21d, trial_stalled=10d ,")
    assert overrides == {"inactive": 21 * DAY, "trial_stalled": 10 * DAY}
    saas = load_preset("saas")
    changed = with_trigger_durations(saas, overrides)
    assert changed.triggers.describe_durations() == {
        "trial_stalled": "10d",
        "onboarding_stalled": "3d",
        "inactive": "21d",
        "churned_30d": "30d",
    }
    # The index follows the new rules; the preset itself is unchanged.
    assert changed.triggers.time_by_stage["usage"][0].duration_ms == 21 * DAY
    assert saas.triggers.time_by_name["inactive"].duration_ms == 14 * DAY
    assert with_trigger_durations(saas, {}) is saas


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("inactive", r"'inactive' is not rule=duration"),
        ("=3d", r"is not rule=duration"),
        ("inactive=3x", r"trigger durations: inactive: must be a duration"),
        ("inactive=3d,inactive=4d", r"rule 'inactive' is given twice"),
    ],
)
def test_bad_duration_overrides_are_named(text: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        parse_duration_overrides(text)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"nope": DAY}, r"no trigger rule 'nope'; rules: \['trial_stalled'"),
        ({"payment_failed": DAY}, r"'payment_failed' is an event rule"),
        ({"inactive": 0}, r"'inactive' must be longer than zero"),
    ],
)
def test_overrides_of_unknown_or_event_rules_are_refused(
    overrides: dict[str, int], match: str
) -> None:
    with pytest.raises(ModelError, match=match):
        with_trigger_durations(load_preset("saas"), overrides)


# ---------------------------------------------------------------------------
# Validation errors name the file and the field


def _trigger(i: int, **changes: Any) -> dict[str, Any]:
    raw = model()
    rule = raw["triggers"][i]
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    return raw


INVALID: list[Any] = [
    pytest.param({**model(), "triggers": {}}, r"triggers: must be a list", id="not-a-list"),
    pytest.param({**model(), "triggers": [3]}, r"triggers\[0\]: must be an object", id="not-obj"),
    pytest.param(
        _trigger(0, name="bad name"), r"triggers\[0\]\.name: must be an identifier", id="name"
    ),
    pytest.param(
        _trigger(0, type="email"),
        r"triggers\[0\]\.type: unknown trigger type 'email'; use \['nurture', 'churn-risk'",
        id="type",
    ),
    pytest.param(_trigger(0, priority=-1), r"triggers\[0\]\.priority: must be a whole", id="prio"),
    pytest.param(_trigger(0, priority=True), r"triggers\[0\]\.priority", id="prio-bool"),
    pytest.param(_trigger(0, colour="red"), r"triggers\[0\]: unknown field\(s\) colour", id="key"),
    pytest.param(
        _trigger(0, after=None),
        r'needs exactly one of "on" \(event rule\) or "after"',
        id="neither",
    ),
    pytest.param(
        _trigger(0, on={"enter": "a"}), r'triggers\[0\]: needs exactly one of "on"', id="both"
    ),
    pytest.param(
        _trigger(0, after={"stalled": "7d"}), r"triggers\[0\]\.after\.in: is required", id="no-in"
    ),
    pytest.param(
        _trigger(0, after={"stalled": "7d", "in": ["zz"]}),
        r"triggers\[0\]\.after\.in: unknown stage 'zz'",
        id="bad-stage",
    ),
    pytest.param(
        _trigger(0, after={"stalled": "7d", "in": []}),
        r"after\.in: must be a non-empty list of stages",
        id="empty-in",
    ),
    pytest.param(
        _trigger(0, after={"stalled": "soon", "in": ["b"]}),
        r"triggers\[0\]\.after\.stalled: must be a duration",
        id="bad-duration",
    ),
    pytest.param(
        _trigger(0, after={"stalled": "7d", "inactive": "3d", "in": ["b"]}),
        r"after: needs exactly one of stalled, inactive, entered",
        id="two-kinds",
    ),
    pytest.param(
        _trigger(0, after={"stalled": "7d", "in": ["b"], "stage": "b"}),
        r"after\.stage: applies to entered rules only",
        id="stage-on-stalled",
    ),
    pytest.param(
        _trigger(2, after={"entered": "30d"}),
        r"triggers\[2\]\.after\.stage: unknown stage None",
        id="no-stage",
    ),
    pytest.param(
        _trigger(2, after={"entered": "30d", "stage": "d", "while": ["c"]}),
        r"after\.while: must include the entered stage 'd'",
        id="while-without-stage",
    ),
    pytest.param(
        _trigger(2, after={"entered": "30d", "stage": "d", "in": ["d"]}),
        r"after\.in: an entered rule names its stage",
        id="in-on-entered",
    ),
    pytest.param(
        _trigger(1, move_to="zz"), r"triggers\[1\]\.move_to: unknown stage 'zz'", id="move-unknown"
    ),
    pytest.param(
        _trigger(1, move_to="c"),
        r"triggers\[1\]\.move_to: 'c' is one of the stages the rule waits in",
        id="move-into-own-stage",
    ),
    pytest.param(
        _trigger(4, move_to="d"),
        r"triggers\[4\]\.move_to: is for time rules",
        id="move-on-event-rule",
    ),
    pytest.param(
        _trigger(4, on={"event": []}),
        r"on\.event: must be an event name or a non-empty list",
        id="no-event",
    ),
    pytest.param(
        _trigger(4, on={"event": "X", "properties": {"score": {"near": 3}}}),
        r"on\.properties\.score: unknown operator 'near'",
        id="bad-condition",
    ),
    pytest.param(
        _trigger(6, on={"enter": "b", "leave": "a"}),
        r"on: needs exactly one of enter, leave, event",
        id="enter-and-leave",
    ),
    pytest.param(
        _trigger(6, on={"enter": "b", "in": ["a"]}),
        r"triggers\[6\]\.on\.in: applies to event rules only, not to enter",
        id="in-on-enter",
    ),
    pytest.param(
        _trigger(7, on={"leave": "zz"}),
        r"triggers\[7\]\.on\.leave: unknown stage 'zz'",
        id="leave-unknown",
    ),
    pytest.param(
        _trigger(1, name="stalled_b"),
        r"triggers\[1\]\.name: duplicate trigger rule name 'stalled_b'",
        id="duplicate",
    ),
]


@pytest.mark.parametrize(("raw", "match"), INVALID)
def test_validation_names_the_trigger_field(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match) as caught:
        parse_model(copy.deepcopy(raw), "mini.json")
    assert str(caught.value).startswith("mini.json: triggers")
