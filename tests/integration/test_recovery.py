"""A restarted worker recovers its customers table from the changelog; failures stop it loudly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.changelog import customers_changelog
from tests.bench.kafka_util import create_topic
from tests.integration.conftest import make_settings
from tests.integration.kafka_io import consume_until, produce
from tests.integration.segment import at, record, seg
from tests.integration.test_worker import changes_of, moves
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration


async def test_restarted_worker_carries_on_with_the_same_state(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path)
    await create_topics(settings)
    cat = Catalog(settings)
    customers = [f"r{i}-{unique_name}" for i in range(6)]
    before = []
    for who in customers:
        before += [
            seg(who, "Order Completed", at(0), mid=f"{who}-buy"),
            seg(who, "Feature Used", at(1)),  # onboarding, active day 1
            seg(who, "Signed In", at(2)),  # active day 2
        ]
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(kafka_bootstrap, cat.name(Catalog.TOUCHPOINTS), [record(m) for m in before])
        first = await consume_until(
            kafka_bootstrap,
            [cat.name(Catalog.STAGE_CHANGES)],
            lambda rs: all(len(changes_of(rs, c)) >= 2 for c in customers),
        )
        assert all(
            moves(changes_of(first, c))
            == [(None, "acquisition", "purchased"), ("acquisition", "onboarding", "first_activity")]
            for c in customers
        )
        # Faust commits offsets and flushes the changelog on a clean stop.
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    # A fresh process with an empty memory store: all it knows comes from the changelog.
    again = WorkerProcess(settings, tmp_path / "worker.log")
    again.start()
    try:
        assert "customers-changelog" in again.log()
        # Recovered by the bulk reader, not Faust's record-by-record loop.
        bulk = re.search(r"bulk changelog read: (\d+) records", again.log())
        assert bulk is not None, again.log()[-3000:]
        assert int(bulk.group(1)) >= len(customers)
        after = []
        for who in customers:
            after += [
                seg(who, "Order Completed", at(0), mid=f"{who}-buy"),  # replay: a duplicate
                seg(who, "Feature Used", at(3)),  # active day 3 -> usage, if day 1 and 2 survived
            ]
        await produce(kafka_bootstrap, cat.name(Catalog.TOUCHPOINTS), [record(m) for m in after])
        out = await consume_until(
            kafka_bootstrap,
            [cat.name(Catalog.STAGE_CHANGES)],
            lambda rs: all(len(changes_of(rs, c)) >= 3 for c in customers),
            settle=1.5,
        )
        for who in customers:
            assert moves(changes_of(out, who)) == [
                (None, "acquisition", "purchased"),
                ("acquisition", "onboarding", "first_activity"),
                ("onboarding", "usage", "habit_formed"),
            ]
    finally:
        assert again.stop() == 0, again.log()[-3000:]


async def test_unreadable_stored_record_stops_the_worker_loudly(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path)
    await create_topics(settings)
    changelog = customers_changelog(settings)
    await create_topic(kafka_bootstrap, changelog, settings.partitions)  # as Faust makes it
    await produce(kafka_bootstrap, changelog, [(b"someone", b'{"v": 99}', None)])
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    # Once the table is recovered, the worker counts its customers per stage from
    # every record: it stops there, before it processes anything.
    with pytest.raises(RuntimeError, match="worker exited with"):
        worker.start()
    code = worker.wait_exit(timeout=60)
    log = worker.log()
    assert code not in (None, 0), log[-3000:]
    assert "stored customer record cannot be read" in log
    assert "unsupported state record version 99" in log


async def test_a_failing_input_reader_stops_the_worker_loudly(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique_name, tmp_path)
    await create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "tests.integration.failing_reader")
    worker.start()
    await produce(
        kafka_bootstrap, Catalog(settings).name(Catalog.TOUCHPOINTS),
        [record(seg("someone", "Signed Up", at(0)))],
    )  # fmt: skip
    code = worker.wait_exit(timeout=60)
    log = worker.log()
    assert code not in (None, 0), log[-3000:]
    assert "input reader failure injected by the test" in log
