"""One worker with the Redis profile store, through its web server: health and readiness,
the customer API with its errors, funnel and stages, the OpenAPI document, a scrape
through ``promtool check metrics``, the Redis projection across a Redis outage, and
``journey redis rebuild``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from openapi_spec_validator import validate as validate_openapi

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.changelog import customers_changelog
from engine.funnel_source import funnel_from_document
from engine.profiles import read_profile
from tests.bench.kafka_util import create_topic
from tests.integration.conftest import make_settings
from tests.integration.kafka_io import produce
from tests.integration.redis_servers import PinnedRedis
from tests.integration.segment import at, iso, record, seg
from tests.integration.worker_http import (
    OPENAPI,
    OPENAPI_PATH,
    base,
    customers_gauge,
    get,
    get_doc,
    samples,
    total,
    until,
)
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = [  # (call or event, day, the move it makes)
    ("page", 0, (None, "discovery", "first_visit")),
    ("Signed Up", 1, ("discovery", "evaluation", "signed_up")),
    ("Order Completed", 3, ("evaluation", "acquisition", "purchased")),
    ("Feature Used", 4, ("acquisition", "onboarding", "first_activity")),
]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PinnedRedis]:
    server = PinnedRedis(log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(
    kafka_bootstrap: str,
    redis_server: PinnedRedis,
    module_name: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    data = tmp_path_factory.mktemp("api-worker")
    settings = make_settings(
        kafka_bootstrap,
        module_name,
        data,
        redis_url=redis_server.url,
        redis_timeout_s=0.5,
        redis_retry_max_s=0.3,
        metrics_interval_s=0.5,
    )
    asyncio.run(create_topics(settings))
    proc = WorkerProcess(settings, data / "worker.log")
    proc.start()
    yield proc
    assert proc.stop() == 0, proc.log()[-3000:]


async def publish(worker: WorkerProcess, who: str, steps: list[tuple[str, float]]) -> None:
    topic = Catalog(worker.settings).name(Catalog.TOUCHPOINTS)
    messages = [seg(who, what, at(day)) for what, day in steps]
    await produce(worker.settings.kafka_bootstrap, topic, [record(m) for m in messages])


async def journey_of(worker: WorkerProcess, who: str) -> None:
    """Publish :data:`JOURNEY` for ``who`` and wait until the API shows its end."""
    await publish(worker, who, [(what, day) for what, day, _ in JOURNEY])
    path = "/customers/" + urllib.parse.quote(who, safe="")

    async def arrived() -> bool:
        answer = await get(worker, path)
        return answer.status == 200 and answer.json()["stage"] == "onboarding"

    await until(arrived)


async def test_health_and_readiness(worker: WorkerProcess) -> None:
    alive = await get_doc(worker, "/healthz", 200, "Health")
    assert alive["worker"] == base(worker)
    ready = await get_doc(worker, "/readyz", 200, "Readiness")
    assert ready == {
        "ready": True,
        "reason": "ready",
        "worker": base(worker),
        "partitions": [0, 1],
    }


async def test_profile_and_explain_of_a_customer(worker: WorkerProcess, unique_name: str) -> None:
    who = f"api-{unique_name}"
    await journey_of(worker, who)
    answer = await get(worker, f"/customers/{who}")
    assert answer.headers["X-Journey-Worker"] == base(worker)
    profile = answer.json()
    assert profile["customer_id"] == who
    assert (profile["model"], profile["stage"], profile["events"]) == ("saas", "onboarding", 4)
    assert profile["stage_rule"] == "first_activity"
    assert profile["stage_entered_at"] == iso(at(4))
    assert profile["visits"] == {"discovery": 1, "evaluation": 1, "acquisition": 1, "onboarding": 1}

    explained = await get_doc(worker, f"/customers/{who}/explain", 200, "Explain")
    moves = [(m["from_stage"], m["to_stage"], m["rule"]) for m in explained["history"]]
    assert moves == [move for _, _, move in JOURNEY]
    assert all(m["rule_description"] for m in explained["history"])
    assert len({m["message_id"] for m in explained["history"]}) == 4
    assert explained["history"][1]["at"] == iso(at(1))
    # A paying customer active on day 4 is due for the `inactive` check 14 days later.
    pending = {t["rule"]: t["due_at"] for t in explained["pending_timers"]}
    assert pending.get("inactive") == iso(at(4 + 14)), explained["pending_timers"]
    assert explained["triggers"] == []
    assert (explained["moves"], explained["history_truncated"]) == (4, False)
    assert explained["policy_decisions"] == []


async def test_customer_errors_are_json_with_their_status(
    worker: WorkerProcess, unique_name: str
) -> None:
    missing = await get_doc(worker, f"/customers/nobody-{unique_name}", 404, "Error")
    assert missing["error"] == "unknown_customer"
    await get_doc(worker, f"/customers/nobody-{unique_name}/explain", 404, "Error")
    too_long = await get_doc(worker, "/customers/" + "x" * 513, 400, "Error")
    assert too_long["error"] == "bad_customer_id"
    assert "512" in too_long["message"]
    scope = await get_doc(worker, "/stages?scope=galaxy", 400, "Error")
    assert scope["error"] == "bad_scope"
    # Any id the engine accepts can be asked for, URL-encoded.
    odd = f"a/b c?d#é-{unique_name}"
    await journey_of(worker, odd)
    profile = await get_doc(
        worker, "/customers/" + urllib.parse.quote(odd, safe=""), 200, "Profile"
    )
    assert profile["customer_id"] == odd


async def test_stages_and_funnel(worker: WorkerProcess, unique_name: str) -> None:
    for n in range(3):
        await journey_of(worker, f"f{n}-{unique_name}")

    async def agreed() -> tuple[dict[str, Any], dict[str, int]] | None:
        # The API reads the table, written when a batch is applied; the stage counts
        # follow once the batch's outputs are acknowledged.
        stages = await get_doc(worker, "/stages", 200, "Stages")
        counts = {s["stage"]: s["customers"] for s in stages["stages"] if s["customers"]}
        if counts.get("onboarding", 0) < 3 or counts != customers_gauge(await samples(worker)):
            return None
        return stages, counts

    stages, counts = await until(agreed)
    assert stages["model"] == "saas"
    assert [s["stage"] for s in stages["stages"]][:3] == ["discovery", "evaluation", "acquisition"]
    assert stages["customers"] == sum(counts.values())
    everywhere = await get_doc(worker, "/stages?scope=all", 200, "Stages")
    assert everywhere["workers"] == [base(worker)]
    assert everywhere["stages"] == stages["stages"]

    funnel = await get_doc(worker, "/funnel", 200, "Funnel")
    saas = funnel["models"]["saas"]
    assert saas["changes"] >= 12
    step = saas["steps"][0]
    assert (step["from"], step["to"]) == ("discovery", "evaluation")
    assert step["entries"] >= 3
    assert step["moved_on"] >= 3
    onboarding = next(s for s in saas["stages"] if s["stage"] == "onboarding")
    assert onboarding["reached"] >= 3
    all_funnel = await get_doc(worker, "/funnel?scope=all", 200, "Funnel")
    assert all_funnel["models"]["saas"]["changes"] >= saas["changes"]
    # What `journey funnel --from URL` reads to draw the chart.
    drawn = await asyncio.to_thread(funnel_from_document, base(worker) + "/funnel?scope=all")
    assert drawn.models["saas"].changes >= saas["changes"]


async def test_openapi_document_is_served_valid_and_complete(worker: WorkerProcess) -> None:
    answer = await get(worker, "/openapi.json")
    assert answer.status == 200
    assert answer.json() == OPENAPI
    assert answer.body == OPENAPI_PATH.read_bytes()
    validate_openapi(OPENAPI)
    for path in OPENAPI["paths"]:
        if "{customer}" not in path:
            assert (await get(worker, path)).status == 200, path


async def test_scrape_passes_promtool_and_has_the_worker_series(
    worker: WorkerProcess, unique_name: str, tmp_path: Path
) -> None:
    await journey_of(worker, f"m-{unique_name}")
    metrics = await until(lambda: _with_lag(worker))
    page = (await get(worker, "/metrics")).body
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: run deploy/bootstrap.sh"
    checked = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=page, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert total(metrics, "journey_event_latency_seconds_count") >= 4
    assert total(metrics, "journey_emit_latency_seconds_count") >= 1
    assert total(metrics, "journey_time_in_stage_seconds_count", stage="discovery") >= 1
    assert total(metrics, "journey_customers", stage="onboarding") >= 1
    assert total(metrics, "journey_rebalances_total") >= 1
    assert total(metrics, "journey_assigned_partitions") == 2
    assert total(metrics, "journey_table_keys", table="customers") >= 1
    assert total(metrics, "journey_redis_written_profiles_total") >= 1
    assert total(metrics, "journey_timers_pending") >= 1  # the journeys' next timers
    assert total(metrics, "process_resident_memory_bytes") > 0
    topics = Catalog(worker.settings)
    lag_topics = {
        dict(labels)["topic"]
        for (name, labels) in metrics
        if name == "journey_consumer_lag_records"
    }
    assert lag_topics == {topics.name(Catalog.TIMERS), topics.name(Catalog.TOUCHPOINTS),
                          topics.name(Catalog.REKEYED)}  # fmt: skip


async def _with_lag(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    metrics = await samples(worker)
    lags = [k for k in metrics if k[0] == "journey_consumer_lag_records"]
    return metrics if len(lags) >= 6 else {}


async def test_redis_profiles_catch_up_after_an_outage_while_processing_goes_on(
    worker: WorkerProcess, redis_server: PinnedRedis, unique_name: str
) -> None:
    who = f"r-{unique_name}"
    await journey_of(worker, who)
    client = aioredis.Redis.from_url(redis_server.url)
    key = f"{worker.settings.redis_prefix}customer:{who}"
    try:

        async def stored(stage: str) -> dict[str, object] | None:
            raw = await client.hgetall(key)
            profile = read_profile(raw) if raw else None
            return profile if profile and profile["stage"] == stage else None

        in_redis = await until(lambda: stored("onboarding"))
        from_api = (await get(worker, f"/customers/{who}")).json()
        assert in_redis == from_api
        # Its timers are in the profile (the `inactive` check 14 days after day 4 among them).
        inactive = {"kind": "rule", "rule": "inactive", "due_at": iso(at(4 + 14))}
        assert inactive in in_redis["pending_timers"]
        assert in_redis["next_timer_at"] == min(t["due_at"] for t in in_redis["pending_timers"])
        await client.aclose()

        redis_server.stop()
        await publish(worker, who, [("Payment Failed", 5)])  # onboarding -> at_risk

        async def moved_on() -> bool:
            answer = await get(worker, f"/customers/{who}")
            return answer.json()["stage"] == "at_risk"

        await until(moved_on)  # processing goes on without Redis
        await until(lambda: _redis_behind(worker))
        assert (await get(worker, "/readyz")).status == 200

        redis_server.start()
        client = aioredis.Redis.from_url(redis_server.url)
        caught_up = await until(lambda: stored("at_risk"), timeout=30)
        assert caught_up["events"] == 5
        # The payment failure raised a churn-risk trigger while Redis was away: the
        # profile names it with the policy's decision and reason.
        assert caught_up["last_trigger"] == "churn-risk"
        assert caught_up["last_trigger_decision"] in ("sent", "held")  # held: quiet hours now
        assert caught_up["last_trigger_reason"]
        explained = (await get(worker, f"/customers/{who}/explain")).json()
        decided = explained["policy_decisions"] + [
            t for t in explained["triggers"] if t["status"] == "held"
        ]
        ids = [d.get("trigger_id") or d["trigger_id_prefix"] for d in decided]
        assert any(caught_up["last_trigger_id"].startswith(i) for i in ids), (caught_up, decided)
        after = await samples(worker)
        assert total(after, "journey_redis_pending_profiles") == 0
    finally:
        await client.aclose()


async def _redis_behind(
    worker: WorkerProcess,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics once they show failed Redis writes and profiles waiting."""
    metrics = await samples(worker)
    failing = total(metrics, "journey_redis_errors_total") >= 1
    return metrics if failing and total(metrics, "journey_redis_pending_profiles") >= 1 else {}


async def test_redis_rebuild_rewrites_profiles_from_the_changelog(
    worker: WorkerProcess, redis_server: PinnedRedis, unique_name: str
) -> None:
    who = f"rb-{unique_name}"
    await journey_of(worker, who)
    client = aioredis.Redis.from_url(redis_server.url)
    prefix = worker.settings.redis_prefix
    try:
        await until(lambda: client.exists(f"{prefix}customer:{who}"))
        await client.flushdb()
        await client.hset(f"{prefix}customer:gone-{unique_name}", mapping={"events": "1"})
        env = {**os.environ, **worker.settings.to_env(), "PYTHONPATH": str(ROOT)}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "engine.cli", "redis", "rebuild", "--remove-stale"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "removed 1" in done.stdout, done.stdout
        profile = read_profile(await client.hgetall(f"{prefix}customer:{who}"))
        from_api = (await get(worker, f"/customers/{who}")).json()
        assert profile == from_api
        assert not await client.exists(f"{prefix}customer:gone-{unique_name}")
    finally:
        await client.aclose()


async def test_a_redis_refusing_the_worker_stops_it_loudly(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    locked = PinnedRedis("--requirepass", "s3cret", log_path=tmp_path / "redis.log")
    locked.start()
    try:
        settings = make_settings(
            kafka_bootstrap, unique_name, tmp_path, redis_url=locked.url, metrics_interval_s=0.5
        )
        await create_topics(settings)
        proc = WorkerProcess(settings, tmp_path / "worker.log")
        proc.start()
        # One batch: its profile write is refused, and no later batch comes to notice;
        # the periodic check stops the worker.
        await publish(proc, f"locked-{unique_name}", [("page", 0)])
        code = await asyncio.to_thread(proc.wait_exit, 60)
        log = proc.log()
        assert code not in (None, 0), log[-3000:]
        assert "Redis profile store stopped" in log
        assert "AuthenticationError" in log or "NOAUTH" in log, log[-3000:]
    finally:
        locked.stop()


async def test_a_changelog_made_with_another_partition_count_stops_the_worker_loudly(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    # As a broker that creates topics on first use leaves it when a consumer of the
    # changelog starts before the first worker: one partition.
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path, redis_url=redis_url)
    changelog = customers_changelog(settings)
    await create_topic(kafka_bootstrap, changelog, 1)
    await create_topics(settings)
    proc = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        proc.start()
    except RuntimeError:
        pass  # it stopped before it was ready
    else:
        await publish(proc, f"c-{unique_name}", [("page", 0)])
    code = await asyncio.to_thread(proc.wait_exit, 60)
    log = proc.log()
    assert code not in (None, 0), log[-3000:]
    needs = (
        f"topic {changelog} has 1 partitions but the customers table needs {settings.partitions}"
    )
    assert needs in log, log[-3000:]
