"""Topic provisioning and the traffic simulator against the real broker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.admin import TopicMismatch, create_topics
from engine.catalog import Catalog
from engine.ingest import BadInput, decode
from engine.settings import Settings
from engine.simulate import publish
from tests.integration.kafka_io import consume_until

pytestmark = pytest.mark.integration


def settings_for(bootstrap: str, name: str, partitions: int = 3) -> Settings:
    return Settings().with_(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"{name}.",
        touchpoints_topic=f"{name}.touchpoints",
        partitions=partitions,
    )


async def describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        return {d["topic"]: (len(d["partitions"]), {}) for d in described}
    finally:
        await admin.close()


async def test_topics_create_is_idempotent_and_follows_the_catalog(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = settings_for(kafka_bootstrap, unique_name)
    catalog = Catalog(settings)
    first = await create_topics(settings)
    assert set(first.values()) == {"created"}
    assert set(first) == {s.name for s in catalog.all()}
    second = await create_topics(settings)
    assert set(second.values()) == {"exists"}
    found = await describe(kafka_bootstrap, [s.name for s in catalog.all()])
    for spec in catalog.all():
        assert found[spec.name][0] == spec.partitions, spec.name
    assert found[catalog.name(Catalog.TOUCHPOINTS)][0] == 3
    assert found[catalog.name(Catalog.DEAD_LETTER)][0] == 1


async def test_a_touchpoints_topic_with_other_partitions_is_refused(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = settings_for(kafka_bootstrap, unique_name, partitions=4)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{unique_name}.touchpoints", 2, 1)])
    finally:
        await admin.close()
    with pytest.raises(TopicMismatch, match=r"has 2 partitions .* set up for 4"):
        await create_topics(settings)


async def test_simulator_publishes_keyed_segment_journeys(
    kafka_bootstrap: str, unique_name: str
) -> None:
    settings = settings_for(kafka_bootstrap, unique_name)
    await create_topics(settings)
    topic = Catalog(settings).name(Catalog.TOUCHPOINTS)
    stats = await publish(
        kafka_bootstrap,
        topic,
        customers=60,
        rate=0,
        seed=5,
        bad_ratio=0.05,
        duplicate_ratio=0.05,
        now=datetime(2026, 6, 1, tzinfo=UTC),
    )
    total = stats.sent + stats.duplicates + stats.bad
    assert stats.sent > 300
    assert stats.bad > 0
    assert stats.duplicates > 0
    records = await consume_until(kafka_bootstrap, [topic], lambda rs: len(rs) >= total)
    assert len(records) == total
    good, bad, ids, names = 0, 0, [], set()
    for r in records:
        try:
            event = decode(r.value)
        except BadInput:
            bad += 1
            continue
        good += 1
        assert r.key == event.customer_id.encode()  # keyed by customer: no repartition
        ids.append(event.message_id)
        names.add(event.name)
    assert (good, bad) == (stats.sent + stats.duplicates, stats.bad)
    assert len(ids) - len(set(ids)) == stats.duplicates
    assert {"Signed Up", "Order Completed", "Subscription Cancelled", "Referral Sent"} <= names
    assert dataclasses.asdict(stats)  # the stats object is a plain dataclass for the CLI
