"""Lifecycle model files: the presets load, and validation names the bad field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.journey import (
    EventType,
    ModelError,
    load_model,
    load_preset,
    preset_names,
    resolve_model,
)
from engine.journey.model import parse_model
from tests.unit.journeys import ev

PRESETS_DIR = Path(__file__).resolve().parents[2] / "engine" / "journey" / "presets"

# ---------------------------------------------------------------------------
# The bundled presets


def test_the_four_presets_are_bundled() -> None:
    assert {"saas", "aida", "b2b", "freemium"} <= set(preset_names())
    assert list(preset_names()) == sorted(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_and_is_documented(name: str) -> None:
    model = load_preset(name)
    assert model.name == name
    assert model.version >= 1
    assert model.key == f"{name}@{model.version}"
    assert model.description
    assert model.path, "every preset has a funnel order"
    for stage in model.stages.values():
        assert stage.description, f"stage {stage.name} has no description"
    for rule in model.rules:
        assert rule.description, f"rule {rule.name} has no description"
    # A new customer can enter the funnel at its first stage.
    assert any(None in r.sources and r.to == model.path[0] for r in model.rules)
    # The file on disk is the same model (resolve_model takes a path too).
    assert resolve_model(str(PRESETS_DIR / f"{name}.json")) == model
    assert resolve_model(name) == model


@pytest.mark.parametrize("name", preset_names())
def test_preset_file_keeps_rules_in_file_order(name: str) -> None:
    raw = json.loads((PRESETS_DIR / f"{name}.json").read_text("utf-8"))
    assert [r.name for r in load_preset(name).rules] == [r["name"] for r in raw["rules"]]


def test_unknown_preset_name_lists_the_presets() -> None:
    with pytest.raises(ModelError, match=r"unknown preset 'nope'; presets: .*saas"):
        load_preset("nope")
    with pytest.raises(ModelError, match=r"unknown preset 'nope'"):
        resolve_model("nope")


# ---------------------------------------------------------------------------
# Validation. ``minimal()`` is a valid model; each case breaks one thing.


def minimal() -> dict[str, Any]:
    return {
        "name": "mini",
        "version": 1,
        "stages": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "path": ["a", "b", "c"],
        "activity": ["Signed In"],
        "rules": [
            {"name": "r0", "to": "a", "from": [None], "when": {"types": ["page"]}},
            {"name": "r1", "to": "b", "from": ["a"], "when": {"events": ["Signed Up"]}},
            {
                "name": "r2",
                "to": "c",
                "from": ["b"],
                "when": {"events": ["NPS Submitted"], "properties": {"score": {"gte": 9}}},
            },
        ],
    }


def test_minimal_model_is_valid() -> None:
    model = parse_model(minimal(), "mini.json")
    assert [r.name for r in model.rules] == ["r0", "r1", "r2"]
    assert model.rules[0].sources == frozenset({None})
    assert model.rules[0].types == frozenset({EventType.PAGE})


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets ``raw[k1][k2]... = value``; ``path`` is dotted, ints index lists."""
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]

    def mutate(raw: dict[str, Any]) -> None:
        target: Any = raw
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return mutate


def _delete(path: str) -> Mutation:
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]

    def mutate(raw: dict[str, Any]) -> None:
        target: Any = raw
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]

    return mutate


def _append_rule(rule: dict[str, Any]) -> Mutation:
    return lambda raw: raw["rules"].append(rule)


INVALID: list[Any] = [
    pytest.param(
        _set("rules.0.to", "nowhere"),
        r"mini\.json: rules\[0\]\.to: unknown stage 'nowhere'",
        id="unknown-to",
    ),
    pytest.param(
        _set("rules.0.to", ["a"]), r"rules\[0\]\.to: unknown stage \['a'\]", id="to-not-a-string"
    ),
    pytest.param(
        _set("rules.1.from", ["a", "nowhere"]),
        r"rules\[1\]\.from: unknown stage 'nowhere'",
        id="unknown-from",
    ),
    pytest.param(
        _set("rules.1.from", "a"),
        r"rules\[1\]\.from: must be '\*' or a non-empty list",
        id="from-not-a-list",
    ),
    pytest.param(_set("rules.1.from", []), r"rules\[1\]\.from: must be", id="from-empty"),
    pytest.param(
        _set("stages.2", {"name": "a"}), r"stages\[2\]: duplicate stage 'a'", id="duplicate-stage"
    ),
    pytest.param(
        _set("rules.2.name", "r0"),
        r"rules\[2\]\.name: duplicate rule name 'r0'",
        id="duplicate-rule",
    ),
    pytest.param(_delete("rules.1.name"), r"rules\[1\]\.name: is required", id="rule-no-name"),
    pytest.param(
        _set("rules.0.when.event", ["Signed Up"]),
        r"rules\[0\]\.when: unknown field\(s\) event; allowed:",
        id="unknown-when-key",
    ),
    pytest.param(
        _set("rules.0.when.types", ["page", "click"]),
        r"rules\[0\]\.when\.types: unknown type 'click'",
        id="unknown-type",
    ),
    pytest.param(
        _set("rules.0.when.types", "page"),
        r"rules\[0\]\.when\.types: must be a list of non-empty strings",
        id="types-not-a-list",
    ),
    pytest.param(
        _set("rules.1.when.events", ["Signed Up", ""]),
        r"rules\[1\]\.when\.events: must be a list of non-empty strings",
        id="empty-event-name",
    ),
    pytest.param(
        _set("rules.2.when.properties", {"score": {"approx": 9}}),
        r"rules\[2\]\.when\.properties\.score: unknown operator 'approx'",
        id="unknown-operator",
    ),
    pytest.param(
        _set("rules.2.when.properties", {"score": {"gte": "nine"}}),
        r"rules\[2\]\.when\.properties\.score\.gte: needs a number, got 'nine'",
        id="non-numeric-gte",
    ),
    pytest.param(_delete("rules.1.when"), r"rules\[1\]\.when: is required", id="no-when"),
    pytest.param(
        _set("rules.1.when", {"properties": {"score": {"gte": 1}}}),
        r"rules\[1\]\.when: needs at least one of types, events, activity",
        id="when-without-trigger",
    ),
    pytest.param(
        _set("rules.1.when.activity", "yes"),
        r"rules\[1\]\.when\.activity: must be true or false",
        id="activity-not-bool",
    ),
    pytest.param(
        _set("rules.1.when.min_active_days_in_stage", -1),
        r"rules\[1\]\.when\.min_active_days_in_stage: must be a whole number >= 0",
        id="negative-min-days",
    ),
    pytest.param(
        _set("rules.1.when.min_active_days_in_stage", True),
        r"rules\[1\]\.when\.min_active_days_in_stage: must be a whole number",
        id="bool-min-days",
    ),
    pytest.param(
        _set("rules.1.late", "no"), r"rules\[1\]\.late: must be true or false", id="late-not-bool"
    ),
    pytest.param(
        _set("rules.1.priority", 1),
        r"rules\[1\]: unknown field\(s\) priority",
        id="unknown-rule-key",
    ),
    pytest.param(
        lambda raw: (raw.pop("activity"), raw["rules"][1]["when"].update(activity=True)),
        r"rules\[1\]\.when\.activity: the model lists no activity",
        id="activity-rule-without-activity-list",
    ),
    pytest.param(
        _set("rules.2.to", "b"), r"mini\.json: stages: no rule leads to c", id="unreachable-stage"
    ),
    pytest.param(
        _set("rules.0.from", ["c"]),
        r"mini\.json: rules: no rule accepts a new customer \(from: null\)",
        id="no-rule-from-null",
    ),
    pytest.param(
        _set("stages.1.name", "b-stage"),
        r"stages\[1\]\.name: must be an identifier",
        id="stage-name-not-identifier",
    ),
    pytest.param(
        _set("stages.1.paying", "yes"),
        r"stages\[1\]\.paying: must be true or false",
        id="paying-not-bool",
    ),
    pytest.param(
        _set("stages.1.colour", "red"),
        r"stages\[1\]: unknown field\(s\) colour",
        id="unknown-stage-key",
    ),
    pytest.param(
        _set("stages", []), r"mini\.json: stages: must be a non-empty list", id="no-stages"
    ),
    pytest.param(_set("rules", []), r"mini\.json: rules: must be a non-empty list", id="no-rules"),
    pytest.param(
        _set("path", ["a", "x"]), r"mini\.json: path: unknown stage 'x'", id="path-unknown-stage"
    ),
    pytest.param(
        _set("path", ["a", "b", "a"]), r"mini\.json: path: lists a stage twice", id="path-duplicate"
    ),
    pytest.param(
        _set("name", "my model"), r"mini\.json: name: must be an identifier", id="bad-name"
    ),
    pytest.param(
        _set("version", 0), r"mini\.json: version: must be a whole number >= 1", id="version-zero"
    ),
    pytest.param(
        _set("version", "1"), r"mini\.json: version: must be a whole number", id="version-string"
    ),
    pytest.param(_set("owner", "me"), r"mini\.json: unknown field\(s\) owner", id="unknown-key"),
]


@pytest.mark.parametrize(("mutate", "match"), INVALID)
def test_validation_names_the_field(mutate: Mutation, match: str) -> None:
    raw = copy.deepcopy(minimal())
    mutate(raw)
    with pytest.raises(ModelError, match=match):
        parse_model(raw, "mini.json")


@pytest.mark.parametrize("raw", [[], "model", None, 3])
def test_a_model_must_be_an_object(raw: Any) -> None:
    with pytest.raises(ModelError, match=r"^mini\.json: a model must be a JSON object"):
        parse_model(raw, "mini.json")


def test_validation_of_a_list_inside_from() -> None:
    raw = copy.deepcopy(minimal())
    raw["rules"][1]["from"] = ["a", ["b"]]
    with pytest.raises(ModelError, match=r"rules\[1\]\.from: unknown stage \['b'\]"):
        parse_model(raw, "mini.json")


# ---------------------------------------------------------------------------
# Files


def test_load_model_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(minimal()), encoding="utf-8")
    assert load_model(path) == parse_model(minimal())
    assert resolve_model(str(path)).name == "mini"


def test_load_model_names_the_file_in_validation_errors(tmp_path: Path) -> None:
    raw = minimal()
    raw["rules"][0]["to"] = "nowhere"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ModelError, match=r"broken\.json: rules\[0\]\.to: unknown stage"):
        load_model(path)


@pytest.mark.parametrize("text", ["{", "", "{'name': 'mini'}", "name: mini", "[1,]"])
def test_load_model_rejects_a_file_that_is_not_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelError, match=r"model\.json: not valid JSON"):
        load_model(path)


def test_load_model_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"absent\.json: cannot read"):
        load_model(tmp_path / "absent.json")


# ---------------------------------------------------------------------------
# Rule semantics visible on the model


def test_from_defaults_to_every_stage_and_new() -> None:
    raw = minimal()
    del raw["rules"][2]["from"]
    model = parse_model(raw)
    assert model.rules[2].sources == frozenset({None, "a", "b", "c"})


def test_rank_follows_the_path() -> None:
    raw = minimal()
    raw["path"] = ["a", "b"]
    model = parse_model(raw)
    assert [model.rank(s) for s in (None, "a", "b", "c")] == [-1, 0, 1, None]


def test_candidates_keep_file_order_and_skip_self_moves() -> None:
    raw = minimal()
    raw["rules"] += [
        {"name": "back_to_a", "to": "a", "from": ["b"], "when": {"events": ["Signed Up"]}},
        {"name": "any_to_c", "to": "c", "when": {"events": ["Signed Up"]}},  # from "*"
    ]
    model = parse_model(raw)
    signed_up = ev("Signed Up")
    assert [r.name for r in model.candidates(None, signed_up)] == ["any_to_c"]
    assert [r.name for r in model.candidates("a", signed_up)] == ["r1", "any_to_c"]
    assert [r.name for r in model.candidates("b", signed_up)] == ["back_to_a", "any_to_c"]
    # a rule never moves a customer to the stage they are in, even with from "*"
    assert model.candidates("c", signed_up) == ()
    assert [r.name for r in model.candidates(None, ev("page"))] == ["r0"]
    assert model.candidates(None, ev("screen")) == ()
    # a page call never matches an events rule, whatever its name
    assert model.candidates("a", ev("page")) == ()
