"""What the worker does with the trigger engine's effects.

``TriggerFired`` goes to the topic of its type, ``PolicyDecision`` to the
decisions topic (counted by trigger type and outcome), ``TimerIgnored`` only to
a counter by reason. ``StageChanged`` effects of the touchpoint path stay with
the processor; :meth:`EffectRouter.route_all` also handles them, for effects of
a fired timer (a time rule's ``move_to``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine import messages
from engine.catalog import Catalog
from engine.journey import (
    Duplicate,
    Effect,
    Outcome,
    PolicyDecision,
    StageChanged,
    TimerIgnored,
    TriggerFired,
    TriggerType,
)
from engine.metrics import NO_STAGE, Metrics
from engine.worker.processor import Outgoing

#: ``TimerIgnored.reason`` texts of the core, by how they start, as metric labels.
IGNORED_REASONS: tuple[tuple[str, str], ...] = (
    ("already fired", "already_fired"),
    ("superseded", "superseded"),
    ("rescheduled", "rescheduled"),
    ("customer is in stage", "left_stage"),
    ("not due yet", "not_due"),
    ("no such customer", "no_customer"),
    ("model ", "no_rule"),
    ("no trigger is held", "nothing_held"),
)


def ignored_reason(reason: str) -> str:
    """A bounded label for a ``TimerIgnored`` reason (the text itself has times)."""
    for start, label in IGNORED_REASONS:
        if reason.startswith(start):
            return label
    return "other"


class EffectRouter:
    """Turns effects into records (``Outgoing``) and counts them."""

    def __init__(self, catalog: Catalog, metrics: Metrics) -> None:
        self.metrics = metrics
        self.decisions = catalog.name(Catalog.DECISIONS)
        self.stage_changes = catalog.name(Catalog.STAGE_CHANGES)
        self.trigger_topics = {kind: catalog.trigger_topic(kind) for kind in TriggerType}
        #: The newest decision per customer key since :meth:`take_decisions` (a
        #: replayed trigger's ``duplicate`` decision is left out).
        self._decisions: dict[bytes, PolicyDecision] = {}

    def take_decisions(self) -> dict[bytes, PolicyDecision]:
        """The decisions routed since the last call, newest per customer key."""
        decisions, self._decisions = self._decisions, {}
        return decisions

    @property
    def topics(self) -> list[str]:
        """Every topic this router writes to (for ``Sink.prepare``)."""
        return [self.decisions, self.stage_changes, *self.trigger_topics.values()]

    def route(self, key: bytes, effect: Effect, now: datetime, out: list[Outgoing]) -> None:
        """A trigger effect: the records it makes are appended to ``out``."""
        if isinstance(effect, TriggerFired):
            value = messages.dumps(messages.trigger(effect, now))
            out.append(Outgoing(self.trigger_topics[effect.type], key, value))
        elif isinstance(effect, PolicyDecision):
            value = messages.dumps(messages.trigger_decision(effect))
            out.append(Outgoing(self.decisions, key, value))
            self.metrics.triggers.labels(effect.type.value, effect.outcome.value).inc()
            if effect.outcome is not Outcome.DUPLICATE:
                self._decisions[key] = effect
        elif isinstance(effect, TimerIgnored):
            self.metrics.timers_ignored.labels(ignored_reason(effect.reason)).inc()

    def route_all(
        self, key: bytes, effects: Iterable[Effect], now: datetime, out: list[Outgoing]
    ) -> None:
        """Every effect, stage changes included (counted as the processor counts them)."""
        for effect in effects:
            if isinstance(effect, StageChanged):
                value = messages.dumps(messages.stage_change(effect, now))
                out.append(Outgoing(self.stage_changes, key, value))
                self.metrics.transitions.labels(
                    effect.model, effect.from_stage or NO_STAGE, effect.to_stage
                ).inc()
            elif not isinstance(effect, Duplicate):
                self.route(key, effect, now, out)
