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


_DIGEST_BITS = 40
_DIGEST_MASK = (1 << _DIGEST_BITS) - 1


def trigger_digest(trigger_id: str) -> int:
    """40 bits of a trigger id (itself a hex digest), as the memory keeps it."""
    return int(trigger_id[:10], 16)


@dataclass(frozen=True, slots=True)
class Decided:
    """One entry of ``TriggerMemory.decided``, unpacked."""

    at_s: int
    digest: int
    sent: bool
    type_index: int
    priority: int


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
    daily cap). ``held``: triggers waiting for quiet hours to end. ``timezone``:
    the customer's IANA zone from the newest event that carried one.
    ``unsubscribed``: an ``Unsubscribed`` event was seen; no trigger goes out.
    """

    active_at: int | None = None
    fired: tuple[tuple[str, int], ...] = ()
    decided: tuple[int, ...] = ()
    held: tuple[Held, ...] = ()
    timezone: str | None = None
    unsubscribed: bool = False

    def decisions(self) -> list[Decided]:
        flat = self.decided
        return [
            Decided(
                at_s=flat[i],
                digest=flat[i + 1] >> 13,
                sent=bool(flat[i + 1] >> 12 & 1),
                type_index=flat[i + 1] >> 10 & 3,
                priority=flat[i + 1] & 0x3FF,
            )
            for i in range(0, len(flat), 2)
        ]

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-ready form; fields at their default are left out."""
        out: dict[str, Any] = {}
        if self.active_at is not None:
            out["a"] = self.active_at
        if self.fired:
            out["f"] = [list(p) for p in self.fired]
        if self.decided:
            out["d"] = list(self.decided)
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
            return cls(
                active_at=None if active is None else int(active),
                fired=tuple((sys.intern(str(r)), int(d)) for r, d in raw.get("f", ())),
                decided=decided,
                held=tuple(Held.from_list(h) for h in raw.get("h", ())),
                timezone=None if zone is None else sys.intern(str(zone)),
                unsubscribed=bool(raw.get("u", 0)),
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise StateError(f"malformed trigger memory: {exc!r}") from exc


EMPTY = TriggerMemory()
