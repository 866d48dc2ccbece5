"""Property conditions: each operator, missing properties, non-numbers, numeric strings."""

from __future__ import annotations

from typing import Any

import pytest

from engine.journey import ModelError
from engine.journey.conditions import PropertyCondition, parse_property_conditions


def holds(op: str, value: Any, properties: dict[str, Any]) -> bool:
    return PropertyCondition(prop="score", op=op, value=value).holds(properties)


@pytest.mark.parametrize(
    ("op", "limit", "actual", "expected"),
    [
        ("eq", "pro", "pro", True),
        ("eq", "pro", "free", False),
        ("eq", 9, 9, True),
        ("eq", 9, 9.0, True),
        ("eq", 9, "9", False),  # eq compares as written: no numeric coercion
        ("eq", True, True, True),
        ("eq", None, None, True),
        ("ne", "pro", "free", True),
        ("ne", "pro", "pro", False),
        ("ne", 9, "9", True),
        ("in", ["pro", "team"], "team", True),
        ("in", ["pro", "team"], "free", False),
        ("in", [1, 2], 2, True),
        ("in", [[1], [2]], [2], True),
        ("gt", 9, 10, True),
        ("gt", 9, 9, False),
        ("gt", 9, 8.99, False),
        ("gte", 9, 9, True),
        ("gte", 9, 10, True),
        ("gte", 9, 8, False),
        ("gte", 9, 8.999, False),
        ("lt", 7, 6, True),
        ("lt", 7, 7, False),
        ("lt", 7, 8, False),
        ("lte", 6, 6, True),
        ("lte", 6, 0, True),
        ("lte", 6, 7, False),
        ("lte", 6, -1, True),
        ("gte", 0.5, 0.5, True),
        ("lt", 0.5, 0.25, True),
        ("gte", "9", 9, True),  # a numeric string limit (validated as a number) compares as one
    ],
)
def test_operator(op: str, limit: Any, actual: Any, expected: bool) -> None:
    assert holds(op, limit, {"score": actual}) is expected


@pytest.mark.parametrize(
    ("value", "properties", "expected"),
    [
        (True, {"score": 3}, True),
        (True, {"score": None}, True),  # present with a null value still exists
        (True, {}, False),
        (True, {"other": 3}, False),
        (False, {}, True),
        (False, {"score": 3}, False),
    ],
)
def test_exists(value: bool, properties: dict[str, Any], expected: bool) -> None:
    assert holds("exists", value, properties) is expected


@pytest.mark.parametrize(
    ("op", "limit"),
    [("eq", 9), ("ne", 9), ("in", [9]), ("gt", 0), ("gte", 0), ("lt", 100), ("lte", 100)],
)
def test_missing_property_never_holds(op: str, limit: Any) -> None:
    assert holds(op, limit, {}) is False
    assert holds(op, limit, {"other": 9}) is False


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize(
    "actual",
    ["ten", "", "9 points", None, [9], {"value": 9}, True, False, "nan"],
    ids=["word", "empty", "trailing-text", "null", "list", "object", "true", "false", "nan"],
)
def test_numeric_operator_on_non_number_is_false(op: str, actual: Any) -> None:
    # Limits chosen so that any number would satisfy the operator: only the
    # non-numeric value can make it fail. Booleans are not numbers here.
    limit = -1e9 if op in ("gt", "gte") else 1e9
    assert holds(op, limit, {"score": actual}) is False
    assert holds(op, limit, {"score": 5}) is True


@pytest.mark.parametrize(
    ("op", "limit", "actual", "expected"),
    [
        ("gte", 9, "9", True),
        ("gte", 9, "10", True),
        ("gte", 9, "8", False),
        ("gt", 9, "9.5", True),
        ("lt", 7, "6.5", True),
        ("lte", 6, "7", False),
        ("lte", 6, " 6 ", True),
        ("gte", 9, "1e1", True),
        ("lt", 0, "-0.5", True),
    ],
)
def test_numeric_strings_compare_as_numbers(
    op: str, limit: Any, actual: str, expected: bool
) -> None:
    assert holds(op, limit, {"score": actual}) is expected


def test_parse_builds_one_condition_per_operator() -> None:
    conds = parse_property_conditions({"score": {"gte": 7, "lte": 8}, "plan": {"in": ["pro"]}}, "w")
    assert conds == (
        PropertyCondition("score", "gte", 7),
        PropertyCondition("score", "lte", 8),
        PropertyCondition("plan", "in", ["pro"]),
    )
    assert all(c.holds({"score": 7.5, "plan": "pro"}) for c in conds)
    assert not all(c.holds({"score": 9, "plan": "pro"}) for c in conds)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ([], r"^w: must be an object"),
        ({"score": 9}, r"^w\.score: must be an object"),
        ({"score": {}}, r"^w\.score: must be an object"),
        ({"score": {"between": [1, 2]}}, r"^w\.score: unknown operator 'between'"),
        ({"score": {"gte": "high"}}, r"^w\.score\.gte: needs a number, got 'high'"),
        ({"score": {"lt": None}}, r"^w\.score\.lt: needs a number"),
        ({"score": {"gt": True}}, r"^w\.score\.gt: needs a number, got True"),
        ({"plan": {"in": "pro"}}, r"^w\.plan\.in: needs a list"),
        ({"plan": {"exists": 1}}, r"^w\.plan\.exists: needs true or false"),
    ],
)
def test_parse_rejects(raw: Any, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        parse_property_conditions(raw, "w")
