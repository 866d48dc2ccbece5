"""Two workers sharing the partitions: the customers-per-stage gauges add up to the
truth before, while and after they share, a customer is answered by any worker,
readiness follows table recovery, and touchpoints that keep coming while the
partitions move are all applied."""

from __future__ import annotations

import asyncio
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.metrics import processed_events
from engine.worker.table_view import key_partition
from tests.integration.conftest import make_settings
from tests.integration.kafka_io import produce
from tests.integration.segment import at, record, seg
from tests.integration.worker_http import (
    base,
    customers_gauge,
    get,
    get_doc,
    samples,
    until,
)
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

PARTITIONS = 4
#: The steps of customer ``n`` are ``STEPS[n % 4]``; where they end.
STEPS = [
    (["page"], "discovery"),
    (["page", "Signed Up"], "evaluation"),
    (["Signed Up", "Order Completed"], "acquisition"),
    (["Signed Up", "Order Completed", "Feature Used"], "onboarding"),
]
CUSTOMERS = 40


def stage_sum(*gauges: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for gauge in gauges:
        for stage, n in gauge.items():
            out[stage] = out.get(stage, 0) + n
    return {k: v for k, v in out.items() if v}


async def processed(worker: WorkerProcess) -> int:
    return processed_events((await get(worker, "/metrics")).body.decode("utf-8"))


async def readiness(worker: WorkerProcess) -> tuple[int, dict[str, Any]] | None:
    try:
        answer = await get(worker, "/readyz")
    except (urllib.error.URLError, ConnectionError):
        return None  # the web server is not up yet
    return answer.status, answer.json()


async def stages_everywhere(worker: WorkerProcess) -> dict[str, int]:
    doc = await get_doc(worker, "/stages?scope=all", 200, "Stages")
    return {s["stage"]: s["customers"] for s in doc["stages"] if s["customers"]}


async def test_gauges_add_up_and_any_worker_answers_while_partitions_move(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(
        kafka_bootstrap, unique_name, tmp_path, partitions=PARTITIONS, metrics_interval_s=0.5
    )
    await create_topics(settings)
    topic = Catalog(settings).name(Catalog.TOUCHPOINTS)
    who = [f"tw{n}-{unique_name}" for n in range(CUSTOMERS)]
    first = [
        record(seg(cid, step, at(day)))
        for n, cid in enumerate(who)
        for day, step in enumerate(STEPS[n % 4][0])
    ]
    truth = {stage: CUSTOMERS // 4 for _, stage in STEPS}

    a = WorkerProcess(settings, tmp_path / "a.log")
    b = WorkerProcess(settings, tmp_path / "b.log")
    a.start()
    flow = _Flow(kafka_bootstrap, topic, [f"flow{n}-{unique_name}" for n in range(FLOW_CUSTOMERS)])
    try:
        await produce(kafka_bootstrap, topic, first)
        await until(lambda: _at_least(a, len(first)))
        # The gauge follows a batch once its outputs are acknowledged, a moment after
        # the events count as processed.
        await until(lambda: _gauge_is(a, truth))
        flowing = asyncio.create_task(flow.run())
        truth["discovery"] += FLOW_CUSTOMERS  # a page view each: discovery
        await until(lambda: _gauge_is(a, truth))

        # B joins: it answers 503 with a reason until its table is recovered.
        seen: list[tuple[int, dict[str, Any]]] = []
        starting = asyncio.create_task(asyncio.to_thread(b.start))

        async def b_ready() -> bool:
            found = await readiness(b)
            if found is not None:
                seen.append(found)
            return found is not None and found[0] == 200

        await until(b_ready, timeout=90, every=0.05)
        await starting
        not_ready = [doc for status, doc in seen if status == 503]
        assert not_ready, seen[:3]
        assert not_ready[0]["ready"] is False
        assert not_ready[0]["reason"].startswith("waiting for")

        shares = await until(lambda: _split(a, b), timeout=60)
        assert stage_sum(customers_gauge(await samples(a)), customers_gauge(await samples(b))) == (
            truth
        )
        for worker in (a, b):
            assert await stages_everywhere(worker) == truth

        # Changes while they share: each discovery customer signs up.
        second = [record(seg(cid, "Signed Up", at(5))) for n, cid in enumerate(who) if n % 4 == 0]
        await produce(kafka_bootstrap, topic, second)
        truth = {
            "discovery": FLOW_CUSTOMERS,
            "evaluation": 20,
            "acquisition": 10,
            "onboarding": 10,
        }

        async def summed() -> bool:
            both = stage_sum(customers_gauge(await samples(a)), customers_gauge(await samples(b)))
            return both == truth

        await until(summed)
        assert await stages_everywhere(a) == truth

        # A customer of B's partitions, asked of A: B answers through A.
        b_parts = set(shares[base(b)])
        theirs = next(c for c in who if key_partition(c.encode(), PARTITIONS) in b_parts)
        direct = await get(b, f"/customers/{theirs}")
        via_a = await get(a, f"/customers/{theirs}")
        assert via_a.status == direct.status == 200
        assert via_a.headers["X-Journey-Worker"] == base(b)
        assert via_a.json() == direct.json()
        explained = await get_doc(a, f"/customers/{theirs}/explain", 200, "Explain")
        assert explained["customer_id"] == theirs
        funnel = await get_doc(a, "/funnel?scope=all", 200, "Funnel")
        assert funnel["workers"] == sorted([base(a), base(b)])
        own = [await get_doc(w, "/funnel", 200, "Funnel") for w in (a, b)]
        assert funnel["models"]["saas"]["changes"] == sum(
            f["models"]["saas"]["changes"] for f in own if "saas" in f["models"]
        )

        # B stops: A takes every partition back and counts them all.
        assert b.stop() == 0, b.log()[-3000:]

        async def a_alone() -> bool:
            found = await readiness(a)
            return found is not None and found[1]["partitions"] == list(range(PARTITIONS))

        await until(a_alone, timeout=90)
        await until(lambda: _gauge_is(a, truth))
        assert await stages_everywhere(a) == truth
        alone = await get(a, f"/customers/{theirs}")
        assert alone.status == 200
        assert alone.headers["X-Journey-Worker"] == base(a)
        assert alone.json()["stage"] == direct.json()["stage"]

        # Touchpoints sent all along, across both moves: every one applied once.
        flow.stop.set()
        sent = await flowing
        assert min(sent.values()) >= 5, sent  # the flow ran while partitions moved
        await until(lambda: flow.all_applied(a, sent), timeout=60)
    finally:
        flow.stop.set()
        b.stop()
        assert a.stop() == 0, a.log()[-3000:]


FLOW_CUSTOMERS = 12


class _Flow:
    """Page views for a few customers, a round every 0.2 s until ``stop`` is set."""

    def __init__(self, bootstrap: str, topic: str, who: list[str]) -> None:
        self.bootstrap, self.topic, self.who = bootstrap, topic, who
        self.stop = asyncio.Event()

    async def run(self) -> dict[str, int]:
        sent = dict.fromkeys(self.who, 0)
        step = 0
        while not self.stop.is_set():
            batch = [record(seg(cid, "page", at(0, hour=step / 60))) for cid in self.who]
            await produce(self.bootstrap, self.topic, batch)
            for cid in self.who:
                sent[cid] += 1
            step += 1
            await asyncio.sleep(0.2)
        return sent

    async def all_applied(self, worker: WorkerProcess, sent: dict[str, int]) -> bool:
        for cid, count in sent.items():
            answer = await get(worker, f"/customers/{cid}")
            if answer.status != 200 or answer.json()["events"] != count:
                return False
        return True


async def _at_least(worker: WorkerProcess, events: int) -> bool:
    return await processed(worker) >= events


async def _gauge_is(worker: WorkerProcess, truth: dict[str, int]) -> bool:
    return customers_gauge(await samples(worker)) == truth


async def _split(a: WorkerProcess, b: WorkerProcess) -> dict[str, list[int]] | None:
    """Both ready with disjoint, non-empty shares of every partition: {url: partitions}."""
    found = [await readiness(w) for w in (a, b)]
    if any(f is None or f[0] != 200 for f in found):
        return None
    shares = {f[1]["worker"]: f[1]["partitions"] for f in found if f is not None}
    parts = [p for share in shares.values() for p in share]
    if sorted(parts) != list(range(PARTITIONS)) or not all(shares.values()):
        return None
    return shares
