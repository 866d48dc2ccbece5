"""What a customer record remembers for triggers, timers and the delivery policy.

One small frozen value, ``CustomerState.triggers``; None until there is anything
to remember (most visitors never get one). Times are epoch milliseconds.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.journey.errors import StateError
from engine.journey.trigger_rules import TriggerType

TYPES: tuple[TriggerType, ...] = tuple(TriggerType)
"""Trigger types by their index in the stored record."""

_TYPE_INDEX = {t: i for i, t in enumerate(TYPES)}


def type_index(kind: TriggerType) -> int:
    return _TYPE_INDEX[kind]


@dataclass(frozen=True, slots=True)
class Held:
    """A trigger held back by quiet hours until ``release_ms``.

    ``cause`` is the cause key (``event:<messageId>`` or ``timer:<rule>@<due ms>``).
    """

    trigger_id: str
    rule: str
    type: TriggerType
    priority: int
    stage: str | None
    fired_ms: int
    cause: str
    release_ms: int

    def to_list(self) -> list[Any]:
        return [
            self.trigger_id,
            self.rule,
            _TYPE_INDEX[self.type],
            self.priority,
            self.stage,
            self.fired_ms,
            self.cause,
            self.release_ms,
        ]

    @classmethod
    def from_list(cls, raw: Any) -> Held:
        tid, rule, kind, priority, stage, fired, cause, release = raw
        return cls(
            trigger_id=str(tid),
            rule=sys.intern(str(rule)),
            type=TYPES[int(kind)],
            priority=int(priority),
            stage=None if stage is None else sys.intern(str(stage)),
            fired_ms=int(fired),
            cause=str(cause),
            release_ms=int(release),
        )


DECIDED_OUTCOMES: tuple[str, ...] = ("sent", "capped", "suppressed", "cooldown", "superseded")
"""The outcomes a ``decided`` entry can have (values of ``effects.Outcome``), by their
index in ``TriggerMemory.why``. ``held`` and ``duplicate`` are not remembered there."""

NOT_SENT = "not_sent"
"""The outcome read for an entry stored before outcomes were kept, when it was not sent."""

_DIGEST_BITS = 40
_DIGEST_MASK = (1 << _DIGEST_BITS) - 1


def trigger_digest(trigger_id: str) -> int:
    """40 bits of a trigger id (itself a hex digest), as the memory keeps it."""
    return int(trigger_id[:10], 16)


@dataclass(frozen=True, slots=True)
class Decided:
    """One entry of ``TriggerMemory.decided`` with its ``why``, unpacked.

    ``rule`` is None and ``outcome`` is ``"sent"`` or ``"not_sent"`` for an entry
    stored before rules and outcomes were kept; otherwise ``outcome`` is one of
    :data:`DECIDED_OUTCOMES`.
    """

    at_s: int
    digest: int
    sent: bool
    type_index: int
    priority: int
    rule: str | None
    outcome: str


def pack_decided(digest: int, sent: bool, kind: TriggerType, priority: int) -> int:
    """The second int of a ``decided`` entry: digest, sent flag, type and priority in
    53 bits (a JSON number any reader can hold exactly)."""
    return (
        (digest & _DIGEST_MASK) << 13 | int(sent) << 12 | _TYPE_INDEX[kind] << 10 | priority & 0x3FF
    )


@dataclass(frozen=True, slots=True)
class TriggerMemory:
    """Per-customer trigger memory.

    ``active_at``: the newest product activity (epoch ms) while in a stage watched
    by an ``inactive`` rule. ``fired``: (time rule, due ms) of timers that fired and
    whose clock has not moved since, so a timer never fires twice for one due
    time. ``decided``: every trigger the policy decided (sent or not), newest
    last, flat as two ints each: the decision time in epoch seconds and
    :func:`pack_decided` (the trigger id's digest, so a replayed trigger is a
    duplicate; whether it was sent, its type and priority, for cooldowns and the
    daily cap). ``why``: aligned with ``decided``, two values per entry at the
    same positions: the trigger's rule name (interned) and the index of its
    outcome in :data:`DECIDED_OUTCOMES`, so the customer's explain answer can say
    what happened; both None for an entry stored before they were kept.
    ``decided`` and ``why`` always have the same length: a changed memory is built
    with :func:`with_decided`, :func:`keep_decided` or ``dataclasses.replace``.
    ``held``: triggers waiting for quiet hours to end. ``timezone``: the
    customer's IANA zone from the newest event that carried one.
    ``unsubscribed``: an ``Unsubscribed`` event was seen; no trigger goes out.
    """

    active_at: int | None = None
    fired: tuple[tuple[str, int], ...] = ()
    decided: tuple[int, ...] = ()
    why: tuple[str | int | None, ...] = ()
    held: tuple[Held, ...] = ()
    timezone: str | None = None
    unsubscribed: bool = False

    def decisions(self) -> list[Decided]:
        """The remembered decisions, oldest first."""
        flat, why = self.decided, self.why
        out = []
        for i in range(0, len(flat), 2):
            packed, rule, index = flat[i + 1], why[i], why[i + 1]
            sent = bool(packed >> 12 & 1)
            if isinstance(index, int):
                outcome = DECIDED_OUTCOMES[index]
            else:  # stored before outcomes were kept
                outcome = DECIDED_OUTCOMES[0] if sent else NOT_SENT
            out.append(
                Decided(
                    at_s=flat[i],
                    digest=packed >> 13,
                    sent=sent,
                    type_index=packed >> 10 & 3,
                    priority=packed & 0x3FF,
                    rule=rule if isinstance(rule, str) else None,
                    outcome=outcome,
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form; fields at their default are left out."""
        out: dict[str, Any] = {}
        if self.active_at is not None:
            out["a"] = self.active_at
        if self.fired:
            out["f"] = [list(p) for p in self.fired]
        if self.decided:
            out["d"] = list(self.decided)
            out["w"] = list(self.why)
        if self.held:
            out["h"] = [h.to_list() for h in self.held]
        if self.timezone is not None:
            out["z"] = self.timezone
        if self.unsubscribed:
            out["u"] = 1
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TriggerMemory:
        """Raises StateError on a record it cannot read."""
        if not isinstance(raw, Mapping):
            raise StateError(f"malformed trigger memory: an object, not {type(raw).__name__}")
        try:
            active = raw.get("a")
            zone = raw.get("z")
            decided = tuple(int(v) for v in raw.get("d", ()))
            if len(decided) % 2:
                raise ValueError("decided needs pairs of numbers")
            why = raw.get("w")
            return cls(
                active_at=None if active is None else int(active),
                fired=tuple((sys.intern(str(r)), int(d)) for r, d in raw.get("f", ())),
                decided=decided,
                why=(None,) * len(decided) if why is None else _read_why(why, len(decided)),
                held=tuple(Held.from_list(h) for h in raw.get("h", ())),
                timezone=None if zone is None else sys.intern(str(zone)),
                unsubscribed=bool(raw.get("u", 0)),
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise StateError(f"malformed trigger memory: {exc!r}") from exc


def _read_why(raw: Any, size: int) -> tuple[str | int | None, ...]:
    """The stored ``w``: a rule name (or null) and an outcome index (or null) for
    each entry of ``d``. Raises ValueError when it is anything else."""
    if not isinstance(raw, list | tuple) or len(raw) != size:
        raise ValueError(
            f"'w' needs a rule and an outcome per decided trigger ({size // 2} in 'd'), not {raw!r}"
        )
    out: list[str | int | None] = []
    for i in range(0, size, 2):
        rule, outcome = raw[i], raw[i + 1]
        if rule is not None and not isinstance(rule, str):
            raise ValueError(f"'w': rule {rule!r} is not a string or null")
        if outcome is not None and (
            type(outcome) is not int or not 0 <= outcome < len(DECIDED_OUTCOMES)
        ):
            raise ValueError(
                f"'w': outcome {outcome!r} is not an index of {list(DECIDED_OUTCOMES)} or null"
            )
        out += (None if rule is None else sys.intern(rule), outcome)
    return tuple(out)


def with_decided(
    memory: TriggerMemory, decided: tuple[int, ...], why: tuple[str | int | None, ...]
) -> TriggerMemory:
    """``memory`` with other decisions: ``decided`` and ``why`` aligned (two values
    each per decision). Positional, without ``dataclasses.replace``: several times
    cheaper."""
    return TriggerMemory(
        memory.active_at,
        memory.fired,
        decided,
        why,
        memory.held,
        memory.timezone,
        memory.unsubscribed,
    )


def keep_decided(
    memory: TriggerMemory,
    active_at: int | None,
    fired: tuple[tuple[str, int], ...],
    held: tuple[Held, ...],
    timezone: str | None,
    unsubscribed: bool,
) -> TriggerMemory:
    """``memory`` with these fields, its decisions (``decided`` and ``why``) kept as
    they are. Positional, without ``dataclasses.replace``: several times cheaper."""
    return TriggerMemory(active_at, fired, memory.decided, memory.why, held, timezone, unsubscribed)


EMPTY = TriggerMemory()
