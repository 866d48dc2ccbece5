"""Profile hashes built from customer states, Redis settings, and the store's buffer.

The store's writes run against a real redis-server in
tests/integration/test_redis_store.py; here only what happens before any I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.journey import (
    Cause,
    CustomerState,
    Event,
    EventType,
    Outcome,
    PolicyDecision,
    StageMachine,
    TriggerType,
    load_preset,
)
from engine.journey.state import to_ms
from engine.messages import iso, iso_ms
from engine.metrics import Metrics
from engine.profiles import (
    PendingTimer,
    ProfileExtras,
    TriggerRecord,
    last_trigger,
    pending_extras,
    profile_fields,
    read_profile,
    timer_extras,
)
from engine.redis_client import connection_options
from engine.redis_store import ProfileStore
from engine.settings import Settings, SettingsError
from engine.worker.effects import EffectRouter
from engine.worker.processor import Outgoing
from engine.worker.triggering import trigger_engine

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MACHINE = StageMachine(load_preset("saas"))


def track(name: str, mid: str, at: datetime, channel: str = "web") -> Event:
    return Event(
        type=EventType.TRACK,
        customer_id="u1",
        message_id=mid,
        timestamp=at,
        name=name,
        channel=channel,
    )


def journey() -> CustomerState:
    state, _ = MACHINE.apply(None, track("Signed Up", "m1", T0), T0)
    state, _ = MACHINE.apply(state, track("Pricing Viewed", "m2", T0 + timedelta(hours=1)), T0)
    state, _ = MACHINE.apply(
        state, track("Pricing Viewed", "m3", T0 + timedelta(hours=2), channel="email"), T0
    )
    return state


def test_profile_fields_describe_thejourney() -> None:
    state = journey()
    fields = profile_fields(state)
    assert fields["customer_id"] == "u1"
    assert fields["model"] == "saas"
    assert fields["model_version"] == str(state.model_version)
    assert fields["stage"] == state.stage
    assert fields["stage_entered_at"] == "2026-03-02T09:00:00.000Z"
    assert fields["stage_rule"] == state.history[-1].rule
    assert fields["stage_message_id"] == "m1"
    assert fields["first_seen"] == "2026-03-02T09:00:00.000Z"
    assert fields["last_seen"] == "2026-03-02T11:00:00.000Z"
    assert fields["events"] == "3"
    assert json.loads(fields["touches"]) == {"web": 2, "email": 1}
    assert fields["touches_total"] == "3"
    assert json.loads(fields["visits"]) == {state.stage: 1}
    assert "last_trigger" not in fields
    assert "pending_timers" not in fields
    assert all(isinstance(v, str) for v in fields.values())


def test_a_new_customer_without_stage_has_empty_fields() -> None:
    fields = profile_fields(CustomerState("n", "saas", 1))
    assert fields["stage"] == fields["stage_entered_at"] == fields["stage_rule"] == ""
    assert read_profile(fields)["stage"] is None


def test_timers_and_trigger_are_written_when_given() -> None:
    extras = ProfileExtras(
        pending_timers=[
            PendingTimer("rule", to_ms(T0 + timedelta(days=14)), "trial_ends"),
            PendingTimer("rule", to_ms(T0 + timedelta(days=7)), "inactive"),
            PendingTimer("release", to_ms(T0 + timedelta(days=7))),
        ],
        last_trigger=TriggerRecord("nurture", "t-1", T0, "trial stalled 7 days", "sent"),
    )
    fields = profile_fields(journey(), extras)
    assert json.loads(fields["pending_timers"]) == [
        {"kind": "release", "rule": "", "due_at": "2026-03-09T09:00:00.000Z"},
        {"kind": "rule", "rule": "inactive", "due_at": "2026-03-09T09:00:00.000Z"},
        {"kind": "rule", "rule": "trial_ends", "due_at": "2026-03-16T09:00:00.000Z"},
    ]
    assert fields["next_timer_at"] == "2026-03-09T09:00:00.000Z"
    assert fields["last_trigger"] == "nurture"
    assert fields["last_trigger_reason"] == "trial stalled 7 days"
    assert fields["last_trigger_decision"] == "sent"
    no_timers = profile_fields(journey(), ProfileExtras(pending_timers=[]))
    assert no_timers["pending_timers"] == "[]"
    assert no_timers["next_timer_at"] == ""


def test_read_profile_gives_typed_values() -> None:
    raw = {k.encode(): v.encode() for k, v in profile_fields(journey()).items()}
    profile = read_profile(raw)
    assert profile["events"] == 3
    assert profile["touches"] == {"web": 2, "email": 1}
    assert profile["touches_total"] == 3
    assert profile["last_seen"] == "2026-03-02T11:00:00.000Z"


def test_newer_extras_keep_what_they_leave_out() -> None:
    trigger = TriggerRecord("nurture", "t-1", T0, "r", "sent")
    older = ProfileExtras(last_trigger=trigger)
    newer = ProfileExtras(pending_timers=[PendingTimer("rule", to_ms(T0), "inactive")])
    merged = newer.merged_over(older)
    assert merged.last_trigger == trigger
    assert merged.pending_timers == newer.pending_timers


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"JOURNEY_REDIS_TLS_CA": "/ca.pem"}, "JOURNEY_REDIS_TLS_CA need a rediss://"),
        (
            {"JOURNEY_REDIS_URL": "rediss://h:6380", "JOURNEY_REDIS_TLS_CERT": "/c.pem"},
            "go together",
        ),
        ({"JOURNEY_REDIS_PREFIX": ""}, "JOURNEY_REDIS_PREFIX"),
        ({"JOURNEY_REDIS_BATCH_SIZE": "0"}, "JOURNEY_REDIS_BATCH_SIZE"),
        ({"JOURNEY_REDIS_MAX_PENDING": "10"}, "JOURNEY_REDIS_MAX_PENDING"),
        ({"JOURNEY_REDIS_TIMEOUT_S": "0"}, "JOURNEY_REDIS_TIMEOUT_S"),
        ({"JOURNEY_REDIS_TLS_VERIFY": "perhaps"}, "JOURNEY_REDIS_TLS_VERIFY"),
    ],
)
def test_bad_redis_settings_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_redis_password_is_masked_and_passed_on() -> None:
    settings = Settings.from_env(
        {"JOURNEY_REDIS_PASSWORD": "s3cret", "JOURNEY_REDIS_PREFIX": "crm:journey:"}
    )
    assert "s3cret" not in repr(settings)
    assert "redis_password='***'" in repr(settings)
    assert Settings.from_env(settings.to_env()) == settings
    opts = connection_options(settings)
    assert opts["password"] == "s3cret"
    assert "ssl_cert_reqs" not in opts


def test_rediss_options_from_settings() -> None:
    settings = Settings.from_env(
        {
            "JOURNEY_REDIS_URL": "rediss://:pw@cache.internal:6380/2",
            "JOURNEY_REDIS_TLS_CA": "/etc/ssl/redis-ca.pem",
            "JOURNEY_REDIS_TLS_CERT": "/etc/ssl/client.pem",
            "JOURNEY_REDIS_TLS_KEY": "/etc/ssl/client.key",
        }
    )
    opts = connection_options(settings)
    assert opts["ssl_ca_certs"] == "/etc/ssl/redis-ca.pem"
    assert opts["ssl_certfile"] == "/etc/ssl/client.pem"
    assert opts["ssl_keyfile"] == "/etc/ssl/client.key"
    assert opts["ssl_cert_reqs"] == "required"
    assert opts["ssl_check_hostname"] is True
    unverified = connection_options(settings.with_(redis_tls_verify=False))
    assert unverified["ssl_cert_reqs"] == "none"
    assert unverified["ssl_check_hostname"] is False
    # The URL gives the client its TLS connection class, host, port, db and password.
    client = aioredis.from_url(settings.redis_url, **opts)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "cache.internal",
        6380,
        2,
        "pw",
    )
    assert kwargs["ssl_ca_certs"] == "/etc/ssl/redis-ca.pem"


# ------------------------------------------------------------------ the store's buffer


def state(cid: str, events: int) -> CustomerState:
    return CustomerState(cid, "saas", 1, stage="usage", events=events)


def test_offer_keeps_the_latest_state_per_customer_and_bounds_memory() -> None:
    metrics = Metrics(CollectorRegistry(), process=False)
    # A client that is never connected: offer() does no I/O.
    store = ProfileStore(
        aioredis.Redis(), metrics=metrics, batch_size=2, max_pending=3, prefix="p:"
    )
    store.offer([state("a", 1), state("b", 1), state("a", 2)])
    assert store.gap == 2
    store.offer([state("c", 1), state("d", 1), state("e", 1), state("a", 3)])
    assert store.gap == 3  # d and e dropped; a replaced
    assert store.dropped == 2
    assert store.needs_rebuild
    reg = metrics.registry
    assert reg.get_sample_value("journey_redis_pending_profiles") == 3
    assert reg.get_sample_value("journey_redis_dropped_profiles_total") == 2
    assert store.key("a") == "p:customer:a"


def _decision(outcome: str, reason: str, at: datetime) -> PolicyDecision:
    return PolicyDecision(
        trigger_id="ab" * 32,
        type=TriggerType.CHURN_RISK,
        customer_id="u1",
        rule="payment_failed",
        cause=Cause(message_id="m1"),
        priority=95,
        outcome=Outcome(outcome),
        reason=reason,
        decided_at=at,
    )


def test_the_last_trigger_of_a_profile_is_the_decided_trigger_with_its_reason() -> None:
    record = last_trigger(_decision("cooldown", "a churn-risk trigger went out", T0))
    assert record == TriggerRecord(
        "churn-risk", "ab" * 32, T0, "a churn-risk trigger went out", "cooldown"
    )
    fields = profile_fields(journey(), ProfileExtras(last_trigger=record))
    assert (fields["last_trigger"], fields["last_trigger_decision"]) == ("churn-risk", "cooldown")


def test_pending_timers_are_derived_from_the_state_when_the_store_writes() -> None:
    engine = trigger_engine(Settings())
    paying = journey()
    derive = timer_extras(engine.pending_timers)
    expected = engine.pending_timers(paying)
    assert expected  # a customer in a paying stage has timers ahead
    extras = derive(paying)
    assert extras.pending_timers == [PendingTimer(t.kind.value, t.due_ms, t.rule) for t in expected]
    assert [t.due_at for t in extras.pending_timers] == [t.due_at for t in expected]
    assert extras.last_trigger is None
    # Merged over what the batch knew: the timers from the state, the trigger from the batch.
    known = ProfileExtras(last_trigger=last_trigger(_decision("sent", "passed", T0)))
    merged = derive(paying).merged_over(known)
    assert merged.pending_timers == extras.pending_timers
    assert merged.last_trigger == known.last_trigger
    assert pending_extras([]).pending_timers == []


def test_the_router_keeps_the_newest_decision_per_customer_but_not_a_replay() -> None:
    router = EffectRouter(Catalog(Settings()), Metrics(CollectorRegistry(), process=False))
    out: list[Outgoing] = []
    first = _decision("sent", "passed the delivery policy", T0)
    later = _decision("cooldown", "cooldown", T0 + timedelta(hours=1))
    replay = _decision("duplicate", "already decided", T0 + timedelta(hours=2))
    for d in (first, later, replay):
        router.route(b"u1", d, T0, out)
    assert len(out) == 3  # every decision is on the topic
    assert router.take_decisions() == {b"u1": later}
    assert router.take_decisions() == {}


@pytest.mark.parametrize(
    "at",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(2026, 3, 9, 9, 0, 0, 7000, tzinfo=UTC),
        datetime(2028, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_iso_of_epoch_milliseconds_is_iso_of_the_datetime(at: datetime) -> None:
    assert iso_ms(to_ms(at)) == iso(at)
