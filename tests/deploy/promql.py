"""Metric names in PromQL expressions, and the names a registry exports.

PromQL syntax itself is checked by the real parser (``promtool check rules``); this
module only finds which identifiers of a valid expression are metric names: not
functions, aggregation operators, keywords, label names in ``by (...)``, label
matchers, durations or strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*["']([a-zA-Z_:][a-zA-Z0-9_:]*)["']""")
#: Keywords followed by a parenthesized list of label names.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
#: Aggregation operators: ``sum by (le) (...)`` puts a modifier between name and ``(``.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)  # fmt: skip
_KEYWORDS = (
    frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"})
    | _LABEL_LISTS
    | _AGGREGATIONS
)
#: Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def substitute_grafana(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    # Remaining dashboard variables sit inside label matchers: any text will do.
    return re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", "x", expr)


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_to(expr: str, i: int, close: str) -> tuple[int, str]:
    """From an opening bracket at ``i`` to just past its ``close``; returns the inside."""
    start = i + 1
    i = start
    while i < len(expr) and expr[i] != close:
        i = _skip_string(expr, i) if expr[i] in "\"'`" else i + 1
    return i + 1, expr[start:i]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    names: set[str] = set()
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in "\"'`":
            i = _skip_string(expr, i)
        elif ch == "{":
            i, inside = _skip_to(expr, i, "}")
            names.update(_NAME_MATCHER.findall(inside))
        elif ch == "[":
            i, _ = _skip_to(expr, i, "]")
        elif ch.isdigit() or (ch == "." and i + 1 < n and expr[i + 1].isdigit()):
            while i < n and (expr[i].isalnum() or expr[i] in "._"):
                i += 1
        elif match := _IDENT.match(expr, i):
            word = match.group()
            i = match.end()
            j = i
            while j < n and expr[j].isspace():
                j += 1
            follows_paren = j < n and expr[j] == "("
            if word in _LABEL_LISTS and follows_paren:
                i, _ = _skip_to(expr, j, ")")
            elif word in _KEYWORDS or follows_paren:
                continue  # a keyword, or a function / aggregation operator
            else:
                names.add(word)
        else:
            i += 1
    return names


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can expose, with the suffixes of its metric types."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        base = family.name
        if family.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif family.type == "histogram":
            names.update(f"{base}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
        elif family.type == "summary":
            names.update(f"{base}{s}" for s in ("", "_sum", "_count", "_created"))
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
    return names


#: Series Prometheus itself adds to every scrape.
PROMETHEUS_SERIES = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)


def unknown_names(exprs: Iterable[str], exported: set[str]) -> dict[str, set[str]]:
    """``{expression: names it uses that are neither exported nor Prometheus's own}``."""
    unknown: dict[str, set[str]] = {}
    for expr in exprs:
        missing = metric_names(expr) - exported - PROMETHEUS_SERIES
        if missing:
            unknown[expr] = missing
    return unknown
