"""Topic provisioning from the catalog, idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from engine.catalog import Catalog, TopicSpec
from engine.settings import Settings

log = logging.getLogger(__name__)


class TopicMismatch(RuntimeError):
    """An existing topic has a partition count the engine cannot work with."""


async def create_topics(settings: Settings, replication_factor: int = 1) -> dict[str, str]:
    """Create every catalog topic that is missing. Returns name -> created|exists."""
    catalog = Catalog(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in catalog.all() if s.name not in existing]
        outcome = {s.name: "exists" for s in catalog.all() if s.name in existing}
        if wanted:
            new = [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=replication_factor,
                    topic_configs=s.config,
                )
                for s in wanted
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(new)
            for s in wanted:
                outcome[s.name] = "created"
                log.info("created topic %s (%d partitions)", s.name, s.partitions)
        await _check_partitions(admin, catalog.all())
        return outcome
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    copart = [s for s in specs if s.copartitioned]
    counts: dict[str, int] = {}
    for _ in range(50):  # a topic just created may show no partitions for a moment
        described = await admin.describe_topics([s.name for s in copart])
        counts = {d["topic"]: len(d["partitions"]) for d in described if d["partitions"]}
        if len(counts) == len(copart):
            break
        await asyncio.sleep(0.2)
    for spec in copart:
        have = counts.get(spec.name)
        if have is not None and have != spec.partitions:
            raise TopicMismatch(
                f"topic {spec.name} has {have} partitions but the engine is set up for "
                f"{spec.partitions} (JOURNEY_PARTITIONS); they must match for the customers "
                f"table to be co-partitioned"
            )
