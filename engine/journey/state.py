"""The compact per-customer record kept in the customers table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from engine.journey.errors import StateError
from engine.journey.trigger_state import TriggerMemory

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(at: datetime) -> int:
    """Epoch milliseconds, exact (no float rounding), rounded down like ``// 1 ms``."""
    span = at - EPOCH  # normalized: 0 <= seconds < 86400, 0 <= microseconds < 10**6
    return (span.days * 86_400 + span.seconds) * 1000 + span.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * _MS


@dataclass(frozen=True, slots=True)
class Move:
    """One entry of the bounded stage history.

    ``at_ms`` is ``at`` in epoch milliseconds, worked out once: the stored record
    holds it, and a customer's record is written far more often than its history
    changes.
    """

    from_stage: str | None
    to_stage: str
    at: datetime
    rule: str
    message_id: str
    at_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at_ms", to_ms(self.at))


def _ms(at: datetime | None, move: Move | None) -> int | None:
    """``to_ms(at)``, read from ``move`` when it holds that very datetime (a stage is
    entered, and often first or last seen, at the time of the move)."""
    if at is None:
        return None
    if move is not None and move.at is at:
        return move.at_ms
    return to_ms(at)


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything the engine keeps about one customer.

    ``last_seen`` is the newest event time applied; an event older than that is
    late. ``recent_ids`` holds (message hash, seen at ms) pairs for the dedupe
    window. ``active_days_in_stage`` counts distinct UTC days with product activity
    since the current stage was entered; ``last_active_day`` is the newest such
    day as a date ordinal. ``triggers`` is the trigger, timer and delivery-policy
    memory (None until there is any; see ``trigger_state.py``).
    """

    customer_id: str
    model: str
    model_version: int
    stage: str | None = None
    stage_entered_at: datetime | None = None
    history: tuple[Move, ...] = ()
    visits: Mapping[str, int] = field(default_factory=dict)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    touches: Mapping[str, int] = field(default_factory=dict)
    events: int = 0
    late_events: int = 0
    active_days_in_stage: int = 0
    last_active_day: int = 0
    recent_ids: tuple[tuple[int, int], ...] = ()
    triggers: TriggerMemory | None = None

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form (times as epoch milliseconds)."""
        record = self.to_record()
        record["vi"] = dict(self.visits)
        record["t"] = dict(self.touches)
        record["r"] = [list(pair) for pair in self.recent_ids]
        return record

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` sharing the state's own maps and tuples instead of copying
        them into dicts and lists: the same JSON, cheaper to build, for encoders
        that write tuples as arrays. Not to be changed by the caller."""
        visits, touches, history = self.visits, self.touches, self.history
        first, last = (history[0], history[-1]) if history else (None, None)
        out: dict[str, Any] = {
            "v": 1,
            "id": self.customer_id,
            "m": self.model,
            "mv": self.model_version,
            "s": self.stage,
            "se": _ms(self.stage_entered_at, last),
            "h": [[m.from_stage, m.to_stage, m.at_ms, m.rule, m.message_id] for m in history],
            "vi": visits if type(visits) is dict else dict(visits),
            "fs": _ms(self.first_seen, first),
            "ls": _ms(self.last_seen, last),
            "t": touches if type(touches) is dict else dict(touches),
            "n": self.events,
            "ln": self.late_events,
            "ad": self.active_days_in_stage,
            "la": self.last_active_day,
            "r": self.recent_ids,
        }
        if self.triggers is not None:
            out["tr"] = self.triggers.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CustomerState:
        if not isinstance(raw, Mapping):
            raise StateError(
                f"malformed customer state record: an object, not {type(raw).__name__}"
            )
        if raw.get("v") != 1:
            raise StateError(f"unsupported state record version {raw.get('v')!r}")
        try:
            se, fs, ls = raw["se"], raw["fs"], raw["ls"]
            return cls(
                customer_id=str(raw["id"]),
                model=str(raw["m"]),
                model_version=int(raw["mv"]),
                stage=raw["s"],
                stage_entered_at=None if se is None else from_ms(se),
                history=tuple(Move(h[0], h[1], from_ms(h[2]), h[3], h[4]) for h in raw["h"]),
                visits={str(k): int(v) for k, v in raw["vi"].items()},
                first_seen=None if fs is None else from_ms(fs),
                last_seen=None if ls is None else from_ms(ls),
                touches={str(k): int(v) for k, v in raw["t"].items()},
                events=int(raw["n"]),
                late_events=int(raw["ln"]),
                active_days_in_stage=int(raw["ad"]),
                last_active_day=int(raw["la"]),
                recent_ids=tuple((int(a), int(b)) for a, b in raw["r"]),
                triggers=None if raw.get("tr") is None else TriggerMemory.from_dict(raw["tr"]),
            )
        except (
            KeyError,
            TypeError,
            ValueError,
            IndexError,
            AttributeError,
            OverflowError,
            OSError,
        ) as exc:
            raise StateError(f"malformed customer state record: {exc!r}") from exc

    def with_triggers(self, triggers: TriggerMemory | None) -> CustomerState:
        """This state with another trigger memory (the trigger engine's one change).

        Positional, without ``dataclasses.replace``: it runs for most events."""
        state: CustomerState = _POSITIONAL(*_ALL_BUT_TRIGGERS(self), triggers)
        return state

    def time_in_stage_s(self, now: datetime) -> float | None:
        if self.stage_entered_at is None:
            return None
        return max(0.0, (now - self.stage_entered_at).total_seconds())


_FIELDS = [f.name for f in fields(CustomerState)]
assert _FIELDS[-1] == "triggers", "with_triggers passes the trigger memory last"
_ALL_BUT_TRIGGERS = attrgetter(*_FIELDS[:-1])
_POSITIONAL: Any = CustomerState  # called with every field in order
