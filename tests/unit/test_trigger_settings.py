"""JOURNEY_* settings of triggers, timers and the delivery policy, and the engine they build."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from engine.journey import QuietHours, TriggerType
from engine.journey.policy import DAY_MS, DEFAULT_COOLDOWNS
from engine.settings import Settings, SettingsError
from engine.worker.triggering import delivery_policy, trigger_engine


def test_defaults_give_the_saas_rules_and_the_default_policy() -> None:
    s = Settings()
    assert (s.clock, s.timer_tick_s) == ("wall", 0.25)
    engine = trigger_engine(s)
    assert engine.rules.time_by_name["trial_stalled"].duration_ms == 7 * DAY_MS
    policy = engine.policy
    assert policy.cooldown_ms == DEFAULT_COOLDOWNS
    assert policy.daily_cap == 2
    assert policy.quiet == QuietHours(time(21), time(8))
    assert (policy.default_timezone, policy.suppressed) == ("UTC", frozenset())


def test_every_trigger_setting_is_read_and_applied(tmp_path: Path) -> None:
    env = {
        "JOURNEY_CLOCK": "event",
        "JOURNEY_TRIGGER_DURATIONS": "inactive=21d, trial_stalled=2s",
        "JOURNEY_TRIGGER_COOLDOWNS": "nurture=1d",
        "JOURNEY_TRIGGER_DAILY_CAP": "0",
        "JOURNEY_QUIET_HOURS": "22:30-07:00",
        "JOURNEY_DEFAULT_TIMEZONE": "Europe/Berlin",
        "JOURNEY_SUPPRESSION_LIST": "u1, u2,,",
        "JOURNEY_TIMER_TICK_S": "0.1",
    }
    s = Settings.from_env(env)
    assert Settings.from_env(s.to_env()) == s
    assert (s.clock, s.timer_tick_s) == ("event", 0.1)
    engine = trigger_engine(s)
    rules = engine.rules.time_by_name
    assert rules["inactive"].duration_ms == 21 * DAY_MS
    assert rules["trial_stalled"].duration_ms == 2000
    assert rules["churned_30d"].duration_ms == 30 * DAY_MS  # not named: unchanged
    policy = engine.policy
    assert policy.cooldown_ms == {**DEFAULT_COOLDOWNS, TriggerType.NURTURE: DAY_MS}
    assert policy.daily_cap == 0
    assert policy.quiet == QuietHours(time(22, 30), time(7))
    assert policy.default_timezone == "Europe/Berlin"
    assert policy.suppressed == frozenset({"u1", "u2"})


def test_cooldowns_off_and_quiet_hours_off() -> None:
    policy = delivery_policy(Settings().with_(trigger_cooldowns="off", quiet_hours="off"))
    assert policy.cooldown_ms == {}
    assert policy.quiet is None


def test_a_long_cooldown_is_remembered_long_enough() -> None:
    policy = delivery_policy(Settings().with_(trigger_cooldowns="advocacy-ask=90d"))
    assert policy.cooldown_ms[TriggerType.ADVOCACY_ASK] == 90 * DAY_MS
    assert policy.id_memory_ms == 90 * DAY_MS


def test_suppression_list_from_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "suppressed.txt"
    listed.write_text("# opted out by support\nu7\n\n  u8  \n", encoding="utf-8")
    s = Settings.from_env({"JOURNEY_SUPPRESSION_LIST": f"@{listed}"})
    assert delivery_policy(s).suppressed == frozenset({"u7", "u8"})


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"JOURNEY_CLOCK": "lunar"}, "JOURNEY_CLOCK must be wall .* or event"),
        ({"JOURNEY_TRIGGER_DURATIONS": "inactive"}, "JOURNEY_TRIGGER_DURATIONS: .*rule=duration"),
        ({"JOURNEY_TRIGGER_DURATIONS": "inactive=soon"}, "JOURNEY_TRIGGER_DURATIONS: .*inactive"),
        ({"JOURNEY_TRIGGER_COOLDOWNS": "spam=1d"}, "JOURNEY_TRIGGER_COOLDOWNS: .*unknown type"),
        ({"JOURNEY_TRIGGER_COOLDOWNS": "nurture=0d"}, "JOURNEY_TRIGGER_COOLDOWNS: .*longer"),
        ({"JOURNEY_TRIGGER_DAILY_CAP": "-1"}, "JOURNEY_TRIGGER_DAILY_CAP must be >= 0"),
        ({"JOURNEY_TRIGGER_DAILY_CAP": "two"}, "JOURNEY_TRIGGER_DAILY_CAP='two' is not a valid"),
        ({"JOURNEY_QUIET_HOURS": "9pm-8am"}, "JOURNEY_QUIET_HOURS: .*HH:MM-HH:MM"),
        ({"JOURNEY_QUIET_HOURS": "25:00-08:00"}, "JOURNEY_QUIET_HOURS: "),
        ({"JOURNEY_DEFAULT_TIMEZONE": "Mars/Olympus"}, "JOURNEY_DEFAULT_TIMEZONE: unknown"),
        ({"JOURNEY_SUPPRESSION_LIST": "@/no/such/file"}, "JOURNEY_SUPPRESSION_LIST: cannot read"),
        ({"JOURNEY_TIMER_TICK_S": "0"}, r"JOURNEY_TIMER_TICK_S must be in \(0, 1\]"),
        ({"JOURNEY_TIMER_TICK_S": "5"}, r"JOURNEY_TIMER_TICK_S must be in \(0, 1\]"),
    ],
)
def test_bad_trigger_settings_are_refused_with_the_variable_named(
    env: dict[str, str], words: str
) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_a_duration_for_an_unknown_or_event_rule_names_the_model() -> None:
    with pytest.raises(SettingsError, match=r"DURATIONS for model saas.*no trigger"):
        trigger_engine(Settings().with_(trigger_durations="stale=3d"))
    with pytest.raises(SettingsError, match="'payment_failed' is an event rule"):
        trigger_engine(Settings().with_(trigger_durations="payment_failed=3d"))
