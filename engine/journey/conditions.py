"""Conditions on event properties, as written in model files.

``{"score": {"gte": 9}}`` holds when ``properties.score`` is a number >= 9.
Operators: eq, ne, gt, gte, lt, lte, in, exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.journey.errors import ModelError

_NUMERIC = frozenset({"gt", "gte", "lt", "lte"})
_OPS = _NUMERIC | {"eq", "ne", "in", "exists"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class PropertyCondition:
    prop: str
    op: str
    value: Any

    def holds(self, properties: Mapping[str, Any]) -> bool:
        present = self.prop in properties
        if self.op == "exists":
            return present is bool(self.value)
        if not present:
            return False
        actual = properties[self.prop]
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        if self.op == "in":
            return actual in self.value
        number = _number(actual)
        if number is None:
            return False
        limit = float(self.value)
        if self.op == "gt":
            return number > limit
        if self.op == "gte":
            return number >= limit
        if self.op == "lt":
            return number < limit
        return number <= limit


def parse_property_conditions(raw: Any, where: str) -> tuple[PropertyCondition, ...]:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: must be an object of property -> {{operator: value}}")
    out: list[PropertyCondition] = []
    for prop, spec in raw.items():
        if not isinstance(spec, dict) or not spec:
            raise ModelError(f'{where}.{prop}: must be an object such as {{"gte": 9}}')
        for op, value in spec.items():
            if op not in _OPS:
                raise ModelError(f"{where}.{prop}: unknown operator {op!r}; use {sorted(_OPS)}")
            if op in _NUMERIC and _number(value) is None:
                raise ModelError(f"{where}.{prop}.{op}: needs a number, got {value!r}")
            if op == "in" and not isinstance(value, list):
                raise ModelError(f"{where}.{prop}.in: needs a list")
            if op == "exists" and not isinstance(value, bool):
                raise ModelError(f"{where}.{prop}.exists: needs true or false")
            out.append(PropertyCondition(prop=prop, op=op, value=value))
    return tuple(out)
