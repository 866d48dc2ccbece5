"""The delivery-policy gate every trigger passes before it leaves.

Checks, in order: the same trigger id was decided before (``duplicate``); the
customer unsubscribed or is on the suppression list (``suppressed``); a trigger of
the same type went out within the type's cooldown (``cooldown``); it is quiet
hours in the customer's time zone (``held`` until the window opens, then decided
again); the customer already got ``daily_cap`` triggers of at least this priority
in the last 24 hours (``capped``); otherwise ``sent``. Every outcome is a
:class:`PolicyDecision` naming the rule, the cause and the reason.

The cap counts only triggers of equal or higher priority, so a churn-risk trigger
is not blocked by the nurture triggers that filled the day, while a nurture
trigger is blocked by them and by churn-risk ones; triggers produced together are
decided highest priority first.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.journey.durations import format_duration, parse_duration
from engine.journey.effects import Outcome, PolicyDecision, TriggerFired
from engine.journey.errors import ModelError
from engine.journey.state import from_ms, to_ms
from engine.journey.trigger_rules import TriggerType
from engine.journey.trigger_state import (
    DECIDED_OUTCOMES,
    Held,
    TriggerMemory,
    pack_decided,
    trigger_digest,
    type_index,
    with_decided,
)

DAY_MS = 86_400_000
_SENT = 1 << 12
_SENT_TYPE = _SENT | 3 << 10
"""Bits of a ``pack_decided`` int: sent, and sent plus the type index."""
_OUTCOME_INDEX = {Outcome(name): i for i, name in enumerate(DECIDED_OUTCOMES)}
"""An outcome's index in ``TriggerMemory.why``."""


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def valid_timezone(name: str) -> bool:
    return _zone(name) is not None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in local time when no trigger goes out (``start`` inclusive,
    ``end`` exclusive; it may span midnight, as 21:00-08:00 does)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours need a start different from the end")

    def release(self, at: datetime, zone: tzinfo) -> datetime | None:
        """None outside the window; otherwise the UTC instant the window ends."""
        local = at.astimezone(zone)
        clock = local.time().replace(tzinfo=None)
        if self.start < self.end:
            quiet = self.start <= clock < self.end
            day = local.date()
        else:
            quiet = clock >= self.start or clock < self.end
            day = local.date() + timedelta(days=1) if clock >= self.start else local.date()
        if not quiet:
            return None
        opens = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        # In a DST gap the wall time does not exist; never release before ``at``.
        return opens if opens > at else at + timedelta(minutes=1)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``"21:00-08:00"``; an empty text or ``"off"`` is no quiet hours."""
    if text.strip().lower() in ("", "off", "none"):
        return None
    match = _QUIET.match(text)
    if not match:
        raise ModelError(f'quiet hours: {text!r} is not "HH:MM-HH:MM" (such as 21:00-08:00)')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        return QuietHours(time(h1, m1), time(h2, m2))
    except ValueError as exc:
        raise ModelError(f"quiet hours: {text!r}: {exc}") from None


def parse_cooldowns(text: str) -> dict[TriggerType, int]:
    """``"nurture=3d, churn-risk=1d"`` -> milliseconds per trigger type."""
    out: dict[TriggerType, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            kind = TriggerType(name.strip())
        except ValueError:
            raise ModelError(
                f"trigger cooldowns: unknown type {name.strip()!r}; "
                f"use {[t.value for t in TriggerType]}"
            ) from None
        if not sep:
            raise ModelError(f"trigger cooldowns: {item!r} is not type=duration")
        out[kind] = parse_duration(value.strip(), f"trigger cooldowns: {kind.value}")
    return out


DEFAULT_COOLDOWNS: Mapping[TriggerType, int] = {
    TriggerType.NURTURE: 3 * DAY_MS,
    TriggerType.CHURN_RISK: 1 * DAY_MS,
    TriggerType.WIN_BACK: 7 * DAY_MS,
    TriggerType.ADVOCACY_ASK: 30 * DAY_MS,
}


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """``cooldown_ms`` per type (missing: none); ``daily_cap`` per rolling 24 h
    (0: no cap); ``quiet`` hours (None: none) in the customer's zone, else
    ``default_timezone``; ``suppress_events`` set the customer's unsubscribed flag;
    ``suppressed`` is the suppression list of customer ids. ``id_memory_ms`` /
    ``max_ids``: how long and how many decided trigger ids a customer remembers;
    ``max_held``: how many triggers may wait for quiet hours to end."""

    cooldown_ms: Mapping[TriggerType, int] = field(default_factory=lambda: dict(DEFAULT_COOLDOWNS))
    daily_cap: int = 2
    quiet: QuietHours | None = field(default_factory=lambda: QuietHours(time(21), time(8)))
    default_timezone: str = "UTC"
    suppress_events: frozenset[str] = frozenset({"Unsubscribed"})
    suppressed: frozenset[str] = frozenset()
    id_memory_ms: int = 30 * DAY_MS
    max_ids: int = 32
    max_held: int = 4

    def __post_init__(self) -> None:
        if _zone(self.default_timezone) is None:
            raise ValueError(f"unknown default time zone {self.default_timezone!r}")
        if self.daily_cap < 0 or self.max_ids < 1 or self.max_held < 1:
            raise ValueError("daily_cap must be >= 0, max_ids and max_held >= 1")
        if any(ms < 0 for ms in self.cooldown_ms.values()):
            raise ValueError("cooldowns must not be negative")
        if self.id_memory_ms < self.horizon_ms():
            raise ValueError("id_memory_ms must cover the 24 h of the cap and the longest cooldown")

    @classmethod
    def permissive(cls) -> DeliveryPolicy:
        """Only duplicates and unsubscribes are stopped: no cooldown, cap or quiet hours."""
        return cls(cooldown_ms={}, daily_cap=0, quiet=None)

    def zone(self, name: str | None) -> tuple[tzinfo, str]:
        """The customer's zone when it is known and valid, else the default."""
        if name is not None:
            found = _zone(name)
            if found is not None:
                return found, name
        default = _zone(self.default_timezone)
        assert default is not None
        return default, self.default_timezone

    def horizon_ms(self) -> int:
        """How far back sends matter: the 24 h of the cap or the longest cooldown."""
        return max([DAY_MS, *self.cooldown_ms.values()])


def _remember(
    policy: DeliveryPolicy,
    memory: TriggerMemory,
    trigger: TriggerFired,
    now_ms: int,
    outcome: Outcome,
) -> TriggerMemory:
    """Add the decision to ``decided`` and its rule and outcome to ``why``; forget
    decisions older than the id memory and all but the newest ``max_ids``, in both."""
    now_s = now_ms // 1000
    oldest = now_s - policy.id_memory_ms // 1000
    flat, why = memory.decided, memory.why
    kept: list[int] = []
    kept_why: list[str | int | None] = []
    for i in range(0, len(flat), 2):
        if flat[i] >= oldest:
            kept += (flat[i], flat[i + 1])
            kept_why += (why[i], why[i + 1])
    sent = outcome is Outcome.SENT
    kept += (
        now_s,
        pack_decided(trigger_digest(trigger.trigger_id), sent, trigger.type, trigger.priority),
    )
    kept_why += (sys.intern(trigger.rule), _OUTCOME_INDEX[outcome])
    keep = -2 * policy.max_ids
    return with_decided(memory, tuple(kept[keep:]), tuple(kept_why[keep:]))


def decide(
    policy: DeliveryPolicy,
    memory: TriggerMemory,
    trigger: TriggerFired,
    now: datetime,
    *,
    releasing: bool = False,
) -> tuple[TriggerMemory, PolicyDecision]:
    """Decide one trigger. Returns the updated memory and the decision; the caller
    emits the trigger only when the outcome is ``sent``. ``releasing``: the
    trigger is one of the customer's held triggers, already taken out of ``held``."""
    now_ms = to_ms(now)
    now_s = now_ms // 1000
    digest = trigger_digest(trigger.trigger_id)
    # ``decided`` read as it is stored (pairs of ints, see ``pack_decided``):
    # no object per past decision, this runs for every trigger.
    flat = memory.decided

    def decision(
        outcome: Outcome, reason: str, release_at: datetime | None = None
    ) -> PolicyDecision:
        return PolicyDecision(
            trigger_id=trigger.trigger_id,
            type=trigger.type,
            customer_id=trigger.customer_id,
            rule=trigger.rule,
            cause=trigger.cause,
            priority=trigger.priority,
            outcome=outcome,
            reason=reason,
            decided_at=now,
            release_at=release_at,
        )

    for i in range(1, len(flat), 2):
        if flat[i] >> 13 == digest:
            return memory, decision(
                Outcome.DUPLICATE,
                f"trigger already decided at {_iso(flat[i - 1] * 1000)}; not sent again",
            )
    if not releasing and any(h.trigger_id == trigger.trigger_id for h in memory.held):
        return memory, decision(Outcome.DUPLICATE, "trigger already held for quiet hours")

    if trigger.customer_id in policy.suppressed:
        return _remember(policy, memory, trigger, now_ms, Outcome.SUPPRESSED), decision(
            Outcome.SUPPRESSED, "customer is on the suppression list"
        )
    if memory.unsubscribed:
        return _remember(policy, memory, trigger, now_ms, Outcome.SUPPRESSED), decision(
            Outcome.SUPPRESSED, "customer unsubscribed (Unsubscribed event)"
        )

    cooldown = policy.cooldown_ms.get(trigger.type, 0)
    if cooldown:
        sent_of_kind = _SENT | type_index(trigger.type) << 10
        last_s = max(
            (flat[i - 1] for i in range(1, len(flat), 2) if flat[i] & _SENT_TYPE == sent_of_kind),
            default=None,
        )
        last = None if last_s is None else last_s * 1000
        if last is not None and now_ms - last < cooldown:
            return _remember(policy, memory, trigger, now_ms, Outcome.COOLDOWN), decision(
                Outcome.COOLDOWN,
                f"a {trigger.type.value} trigger went out at {_iso(last)}; cooldown "
                f"{format_duration(cooldown)} lasts until {_iso(last + cooldown)}",
            )

    if policy.quiet is not None:
        zone, zone_name = policy.zone(memory.timezone)
        opens = policy.quiet.release(now, zone)
        if opens is not None:
            if len(memory.held) >= policy.max_held:
                return _remember(policy, memory, trigger, now_ms, Outcome.CAPPED), decision(
                    Outcome.CAPPED,
                    f"quiet hours {policy.quiet} in {zone_name} and already "
                    f"{len(memory.held)} triggers held (at most {policy.max_held})",
                )
            held = Held(
                trigger_id=trigger.trigger_id,
                rule=trigger.rule,
                type=trigger.type,
                priority=trigger.priority,
                stage=trigger.stage,
                fired_ms=to_ms(trigger.fired_at),
                cause=trigger.cause.key,
                release_ms=to_ms(opens),
            )
            return replace(memory, held=(*memory.held, held)), decision(
                Outcome.HELD,
                f"quiet hours {policy.quiet} in {zone_name}; held until {_iso(to_ms(opens))}",
                release_at=opens,
            )

    if policy.daily_cap:
        since = now_s - DAY_MS // 1000
        priority = trigger.priority
        count = sum(
            1
            for i in range(1, len(flat), 2)
            if flat[i] & _SENT and flat[i - 1] > since and flat[i] & 0x3FF >= priority
        )
        if count >= policy.daily_cap:
            return _remember(policy, memory, trigger, now_ms, Outcome.CAPPED), decision(
                Outcome.CAPPED,
                f"{count} triggers of priority {trigger.priority} or more went out in the "
                f"last 24 h (cap {policy.daily_cap})",
            )

    reason = "released after quiet hours" if releasing else "passed the delivery policy"
    return _remember(policy, memory, trigger, now_ms, Outcome.SENT), decision(Outcome.SENT, reason)


def supersede(
    policy: DeliveryPolicy, memory: TriggerMemory, trigger: TriggerFired, now: datetime, why: str
) -> tuple[TriggerMemory, PolicyDecision]:
    """A held trigger that no longer fits the customer: recorded, never sent."""
    decision = PolicyDecision(
        trigger_id=trigger.trigger_id,
        type=trigger.type,
        customer_id=trigger.customer_id,
        rule=trigger.rule,
        cause=trigger.cause,
        priority=trigger.priority,
        outcome=Outcome.SUPERSEDED,
        reason=f"held for quiet hours, then superseded: {why}",
        decided_at=now,
    )
    return _remember(policy, memory, trigger, to_ms(now), Outcome.SUPERSEDED), decision


def _iso(ms: int) -> str:
    return from_ms(ms).isoformat(timespec="seconds").replace("+00:00", "Z")
