"""The Redis profile store against real redis-servers: writes, ordering, outage and
catch-up, a slow server, a full buffer, rebuild, passwords and TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from engine.journey import CustomerState
from engine.metrics import Metrics
from engine.profiles import ProfileExtras, TriggerRecord
from engine.redis_client import connect
from engine.redis_store import ProfileStore, ProfileStoreFailed
from engine.settings import Settings
from tests.integration.redis_servers import PinnedRedis, TlsRedis, make_certificates

pytestmark = pytest.mark.asyncio(loop_scope="session")


def state(cid: str, events: int, stage: str = "usage") -> CustomerState:
    return CustomerState(cid, "saas", 1, stage=stage, events=events, touches={"web": events})


def settings_for(url: str, prefix: str, **extra: object) -> Settings:
    return Settings().with_(
        redis_url=url,
        redis_prefix=prefix,
        redis_timeout_s=0.5,
        redis_flush_interval_s=0.01,
        redis_retry_max_s=0.2,
        **extra,
    )


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def store(redis_url: str, unique_name: str) -> AsyncIterator[ProfileStore]:
    metrics = Metrics(CollectorRegistry(), process=False)
    s = ProfileStore.from_settings(settings_for(redis_url, f"t-{unique_name}:"), metrics)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PinnedRedis]:
    """A server of the test's own, to stop, restart or pause."""
    server = PinnedRedis(log_path=tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


async def test_profiles_are_written_latest_state_wins(
    store: ProfileStore, raw: aioredis.Redis
) -> None:
    store.offer([state("a", 1, "onboarding"), state("b", 4)])
    store.offer([state("a", 2, "usage")])
    assert await store.flush(10)
    stored = await raw.hgetall(store.key("a"))
    assert stored["stage"] == "usage"
    assert stored["events"] == "2"
    assert stored["customer_id"] == "a"
    assert (await store.get("b") or {})["touches"] == {"web": 4}
    assert await store.get("nobody") is None
    assert store.written == 2
    odd = 'ü "quoted" 客户 \\ \n'
    store.offer([state(odd, 1, "retention")])
    assert await store.flush(10)
    assert await raw.hget(store.key(odd), "customer_id") == odd
    assert await raw.hget(store.key(odd), "stage") == "retention"
    assert store.gap == 0


async def test_an_older_state_never_replaces_a_newer_profile(
    store: ProfileStore, raw: aioredis.Redis
) -> None:
    store.offer([state("a", 7, "usage")])
    assert await store.flush(10)
    store.offer([state("a", 5, "onboarding")])  # e.g. a late retry, or a previous owner
    assert await store.flush(10)
    assert await raw.hget(store.key("a"), "stage") == "usage"
    assert store.kept_newer == 1


async def test_trigger_fields_stay_when_an_update_knows_only_the_state(
    store: ProfileStore,
) -> None:
    from datetime import UTC, datetime

    trigger = TriggerRecord("nurture", "t-9", datetime(2026, 3, 1, tzinfo=UTC), "stalled", "sent")
    store.offer([state("a", 1)], {"a": ProfileExtras(last_trigger=trigger)})
    assert await store.flush(10)
    store.offer([state("a", 2, "retention")])
    assert await store.flush(10)
    profile = await store.get("a") or {}
    assert profile["stage"] == "retention"
    assert profile["last_trigger"] == "nurture"
    assert profile["last_trigger_reason"] == "stalled"
    assert profile["last_trigger_at"] == "2026-03-01T00:00:00.000Z"


async def test_redis_down_never_blocks_and_the_store_catches_up(own_redis: PinnedRedis) -> None:
    metrics = Metrics(CollectorRegistry(), process=False)
    store = ProfileStore.from_settings(settings_for(own_redis.url, "o:"), metrics)
    await store.start()
    try:
        store.offer([state("before", 1)])
        assert await store.flush(10)
        port = own_redis.port
        own_redis.stop()

        began = time.perf_counter()
        for n in range(50):
            store.offer(state(f"c{i}", n + 1) for i in range(200))
        offered_in = time.perf_counter() - began
        assert offered_in < 0.5, f"offering took {offered_in:.3f}s"
        await wait_for(lambda: store.errors >= 3)
        assert store.gap == 200
        assert sample(metrics, "journey_redis_pending_profiles") == 200
        assert sample(metrics, "journey_redis_errors_total", kind="connection") >= 3
        assert not store.needs_rebuild

        own_redis.start()
        assert own_redis.port == port
        assert await store.flush(20)
        assert sample(metrics, "journey_redis_pending_profiles") == 0
        check = aioredis.from_url(own_redis.url, decode_responses=True)
        try:
            for i in (0, 117, 199):
                assert await check.hget(f"o:customer:c{i}", "events") == "50"
        finally:
            await check.aclose()
    finally:
        await store.stop()


async def test_a_slow_redis_times_out_is_counted_and_caught_up(own_redis: PinnedRedis) -> None:
    metrics = Metrics(CollectorRegistry(), process=False)
    store = ProfileStore.from_settings(settings_for(own_redis.url, "s:"), metrics)
    admin = aioredis.from_url(own_redis.url)
    await store.start()
    try:
        await admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        began = time.perf_counter()
        store.offer(state(f"c{i}", 1) for i in range(1000))
        assert time.perf_counter() - began < 0.2
        await wait_for(lambda: sample(metrics, "journey_redis_errors_total", kind="timeout") >= 1)
        assert await store.flush(20)
        assert store.written == 1000
        assert await admin.hget("s:customer:c999", "stage") == b"usage"
    finally:
        await admin.aclose()
        await store.stop()


async def test_a_full_buffer_drops_updates_and_rebuild_restores_everything(
    own_redis: PinnedRedis,
) -> None:
    metrics = Metrics(CollectorRegistry(), process=False)
    settings = settings_for(own_redis.url, "r[1]*:", redis_max_pending=10, redis_batch_size=4)
    store = ProfileStore.from_settings(settings, metrics)
    await store.start()
    check = aioredis.from_url(own_redis.url, decode_responses=True)
    try:
        own_redis.stop()
        store.offer(state(f"c{i}", 1) for i in range(15))
        assert store.gap == 10
        assert store.dropped == 5
        assert store.needs_rebuild
        own_redis.start()
        assert await store.flush(20)
        assert len([k async for k in check.scan_iter(match="r\\[1\\]\\*:customer:*")]) == 10
        # Profiles of customers the table no longer has, and keys that are not ours.
        await check.hset("r[1]*:customer:ghost", mapping={"events": "1"})
        await check.set("r[1]other", "kept")
        await check.hset("r2:customer:x", mapping={"events": "1"})

        async def table() -> AsyncIterator[CustomerState]:
            for i in range(15):
                yield state(f"c{i}", 1)

        report = await store.rebuild(table())
        assert (report.written, report.kept_newer, report.removed) == (15, 0, 1)
        assert await check.exists("r[1]*:customer:ghost") == 0
        assert await check.get("r[1]other") == "kept"
        assert await check.exists("r2:customer:x") == 1
        assert await check.hget("r[1]*:customer:c14", "stage") == "usage"
    finally:
        await check.aclose()
        await store.stop()


async def test_a_key_of_another_type_stops_the_store_loudly(
    redis_url: str, raw: aioredis.Redis, unique_name: str
) -> None:
    prefix = f"w-{unique_name}:"
    await raw.set(f"{prefix}customer:clash", "not a hash")
    metrics = Metrics(CollectorRegistry(), process=False)
    store = ProfileStore.from_settings(settings_for(redis_url, prefix), metrics)
    await store.start()
    try:
        store.offer([state("clash", 1)])
        with pytest.raises(ProfileStoreFailed, match="WRONGTYPE"):
            await store.flush(10)
        with pytest.raises(ProfileStoreFailed):
            store.offer([state("other", 1)])
        assert sample(metrics, "journey_redis_errors_total", kind="response") == 1
    finally:
        with pytest.raises(ProfileStoreFailed):
            await store.stop()


async def test_password_from_settings_and_a_wrong_one(tmp_path: Path) -> None:
    server = PinnedRedis("--requirepass", "s3cret", log_path=tmp_path / "redis.log")
    server.start()
    try:
        good = ProfileStore.from_settings(
            settings_for(server.url, "a:", redis_password="s3cret"), None
        )
        await good.start()
        good.offer([state("a", 1)])
        assert await good.flush(10)
        assert (await good.get("a") or {})["stage"] == "usage"
        await good.stop()

        metrics = Metrics(CollectorRegistry(), process=False)
        url = server.url.replace("redis://", "redis://:wrong@")
        bad = ProfileStore.from_settings(settings_for(url, "a:"), metrics)
        await bad.start()
        bad.offer([state("b", 1)])
        with pytest.raises(ProfileStoreFailed):
            await bad.flush(10)
        assert sample(metrics, "journey_redis_errors_total", kind="auth") == 1
        with pytest.raises(ProfileStoreFailed):
            await bad.stop()
    finally:
        server.stop()


async def test_rediss_with_the_servers_ca_and_a_password(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    server = TlsRedis(certs, "--requirepass", "tls-pw")
    server.start()
    try:
        url = server.url.replace("rediss://", "rediss://:tls-pw@")
        store = ProfileStore.from_settings(
            settings_for(url, "tls:", redis_tls_ca=str(certs["ca"])), None
        )
        await store.start()
        store.offer([state("a", 3)])
        assert await store.flush(10)
        assert (await store.get("a") or {})["events"] == 3
        await store.stop()

        # Without the CA the certificate does not verify: a setup error, not retried.
        metrics = Metrics(CollectorRegistry(), process=False)
        unverified = ProfileStore.from_settings(settings_for(url, "tls:"), metrics)
        await unverified.start()
        unverified.offer([state("b", 1)])
        with pytest.raises(ProfileStoreFailed):
            await unverified.flush(10)
        assert sample(metrics, "journey_redis_errors_total", kind="tls") == 1
        with pytest.raises(ProfileStoreFailed):
            await unverified.stop()

        # JOURNEY_REDIS_TLS_VERIFY=false: encrypted, server not verified.
        client = connect(settings_for(url, "tls:", redis_tls_verify=False))
        assert await client.ping()
        await client.aclose()
    finally:
        server.stop()
