"""The trigger engine a worker runs, built from the settings.

``TriggerEngine(StageMachine(model with JOURNEY_TRIGGER_DURATIONS), DeliveryPolicy(...))``
with the policy from ``JOURNEY_TRIGGER_COOLDOWNS``, ``JOURNEY_TRIGGER_DAILY_CAP``,
``JOURNEY_QUIET_HOURS``, ``JOURNEY_DEFAULT_TIMEZONE`` and ``JOURNEY_SUPPRESSION_LIST``.
A model without trigger rules gives an engine that only runs the stage machine.
"""

from __future__ import annotations

from datetime import timedelta

from engine.journey import (
    DeliveryPolicy,
    LifecycleModel,
    ModelError,
    StageMachine,
    TriggerEngine,
    resolve_model,
    with_trigger_durations,
)
from engine.journey.durations import parse_duration_overrides
from engine.journey.policy import DAY_MS, parse_quiet_hours
from engine.settings import Settings, SettingsError, suppression_list, trigger_cooldowns

ID_MEMORY_MS = 30 * DAY_MS


def trigger_model(settings: Settings) -> LifecycleModel:
    """The lifecycle model with the durations of ``JOURNEY_TRIGGER_DURATIONS``."""
    model = resolve_model(settings.model)
    try:
        overrides = parse_duration_overrides(settings.trigger_durations)
        return with_trigger_durations(model, overrides)
    except ModelError as exc:
        raise SettingsError(f"JOURNEY_TRIGGER_DURATIONS for model {model.key}: {exc}") from None


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    cooldowns = trigger_cooldowns(settings.trigger_cooldowns)
    return DeliveryPolicy(
        cooldown_ms=cooldowns,
        daily_cap=settings.trigger_daily_cap,
        quiet=parse_quiet_hours(settings.quiet_hours),
        default_timezone=settings.default_timezone,
        suppressed=suppression_list(settings.suppression_list),
        # Decided trigger ids are kept at least as long as the longest cooldown.
        id_memory_ms=max([ID_MEMORY_MS, *cooldowns.values()]),
    )


def trigger_engine(settings: Settings) -> TriggerEngine:
    machine = StageMachine(
        trigger_model(settings),
        dedupe_window=timedelta(seconds=settings.dedupe_window_s),
        dedupe_max_ids=settings.dedupe_max_ids,
        history_limit=settings.history_limit,
    )
    return TriggerEngine(machine, delivery_policy(settings))
