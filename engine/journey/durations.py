"""Durations as written in model files and settings: ``"7d"``, ``"36h"``, ``"1d12h"``.

Units: ``w`` (weeks), ``d`` (days), ``h``, ``m`` (minutes), ``s``. Parts may be
combined largest first (``"1d12h"``). The value is whole milliseconds.
"""

from __future__ import annotations

import re

from engine.journey.errors import ModelError

_UNIT_MS = {"w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"(?:\d+[wdhms])+")
_ORDER = "wdhms"


def parse_duration(text: object, where: str) -> int:
    """Milliseconds of a duration such as ``"14d"``; raises ModelError naming ``where``."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ModelError(
            f'{where}: must be a duration such as "7d", "36h", "90m" or "1d12h", got {text!r}'
        )
    total = 0
    last = -1
    for count, unit in _PART.findall(text):
        rank = _ORDER.index(unit)
        if rank <= last:
            raise ModelError(
                f"{where}: units must go from largest to smallest, once each: {text!r}"
            )
        last = rank
        total += int(count) * _UNIT_MS[unit]
    if total <= 0:
        raise ModelError(f"{where}: must be longer than zero, got {text!r}")
    return total


def format_duration(ms: int) -> str:
    """The shortest text form of a whole number of milliseconds (``86400000`` -> ``"1d"``)."""
    if ms <= 0 or ms % 1000:
        return f"{ms}ms"
    parts: list[str] = []
    rest = ms
    for unit in "dhms":
        count, rest = divmod(rest, _UNIT_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_duration_overrides(text: str, where: str = "trigger durations") -> dict[str, int]:
    """``"inactive=21d, trial_stalled=10d"`` -> ``{"inactive": ..., "trial_stalled": ...}``.

    The form of the ``JOURNEY_TRIGGER_DURATIONS`` setting; an empty text is no override.
    """
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ModelError(f"{where}: {item!r} is not rule=duration (such as inactive=21d)")
        if name in out:
            raise ModelError(f"{where}: rule {name!r} is given twice")
        out[name] = parse_duration(value.strip(), f"{where}: {name}")
    return out
