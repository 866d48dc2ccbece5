"""Helpers for trigger tests on the real broker: journey time, the outputs of triggers.

Workers of these tests run the event-time clock (``JOURNEY_CLOCK=event``): a
partition's clock is the newest event time it has seen, so weeks of journey time
pass as fast as events are published. :class:`JourneyTime` moves every
partition's clock with a page view of one "clock" customer per partition, and
hands each test its own stretch of time (a partition clock never goes back, so a
test starting after another must start later in journey time).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import orjson
from aiokafka.partitioner import murmur2

from engine.catalog import Catalog, load_schema
from engine.journey import TriggerType
from engine.settings import Settings
from tests.integration.kafka_io import Out, consume_until, produce
from tests.integration.segment import iso, record, seg

TRIGGER_SCHEMA = load_schema("trigger.schema.json")
DECISION_SCHEMA = load_schema("trigger-decision.schema.json")
STAGE_SCHEMA = load_schema("stage-change.schema.json")

#: A Monday; each test gets its own 200 days from here on.
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
_stretches = itertools.count()


def partition_of(key: str, partitions: int) -> int:
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class JourneyTime:
    """Journey time of the tests of one worker (or one set of topics)."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self.settings = settings
        self.catalog = Catalog(settings)
        partitions = self.catalog[Catalog.TOUCHPOINTS].partitions
        found: dict[int, str] = {}
        for n in itertools.count():
            key = f"clock-{tag}-{n}"
            found.setdefault(partition_of(key, partitions), key)
            if len(found) == partitions:
                break
        self.clock_customers = [found[p] for p in range(partitions)]

    @staticmethod
    def stretch() -> datetime:
        """Day 0 of a test: 200 days after the previous test's."""
        return EPOCH + timedelta(days=200 * next(_stretches))

    async def publish(self, messages: Iterable[dict[str, Any]]) -> None:
        """Publish in event-time order (the order journeys happen in)."""
        ordered = sorted(messages, key=lambda m: m["timestamp"])
        await produce(
            self.settings.kafka_bootstrap,
            self.catalog.name(Catalog.TOUCHPOINTS),
            [record(m) for m in ordered],
        )

    async def advance(self, to: datetime) -> None:
        """Move every partition's clock to ``to``."""
        await self.publish(seg(who, "page", to) for who in self.clock_customers)


@dataclass(frozen=True)
class Outputs:
    """What the worker wrote for some customers: triggers, decisions, stage changes."""

    triggers: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    changes: list[dict[str, Any]]

    def of(self, customer: str) -> Outputs:
        """One customer's records. Triggers of several types come from several
        topics: they are put in the order of their decisions (one topic, one
        partition per customer, so in the order they were made)."""
        decisions = [d for d in self.decisions if d["customer_id"] == customer]
        order: dict[str, int] = {}
        for n, d in enumerate(decisions):
            order.setdefault(d["trigger_id"], n)
        triggers = [t for t in self.triggers if t["customer_id"] == customer]
        return Outputs(
            sorted(triggers, key=lambda t: order.get(t["trigger_id"], len(order))),
            decisions,
            [c for c in self.changes if c["customer_id"] == customer],
        )

    def rules(self) -> list[str]:
        return [t["rule"] for t in self.triggers]


def output_topics(catalog: Catalog) -> list[str]:
    return [
        catalog.name(Catalog.DECISIONS),
        catalog.name(Catalog.STAGE_CHANGES),
        *(catalog.trigger_topic(kind) for kind in TriggerType),
    ]


def parse(records: list[Out], catalog: Catalog, customers: set[str]) -> Outputs:
    """The records of ``customers``, checked against their schemas and keys."""
    decisions, changes = catalog.name(Catalog.DECISIONS), catalog.name(Catalog.STAGE_CHANGES)
    by_type = {catalog.trigger_topic(kind): kind.value for kind in TriggerType}
    out = Outputs([], [], [])
    for r in records:
        if r.key is None or r.key.decode() not in customers:
            continue
        value = orjson.loads(r.value or b"null")
        assert value["customer_id"] == r.key.decode()
        if r.topic == decisions:
            jsonschema.validate(value, DECISION_SCHEMA)
            out.decisions.append(value)
        elif r.topic == changes:
            jsonschema.validate(value, STAGE_SCHEMA)
            out.changes.append(value)
        else:
            jsonschema.validate(value, TRIGGER_SCHEMA)
            assert value["type"] == by_type[r.topic]
            out.triggers.append(value)
    return out


async def read_outputs(
    settings: Settings,
    customers: Iterable[str],
    done: Callable[[Outputs], bool],
    *,
    settle: float = 0.0,
    timeout: float = 60.0,
) -> Outputs:
    """Read the output topics from the start until ``done`` holds (then ``settle`` s more)."""
    catalog, wanted = Catalog(settings), set(customers)
    records = await consume_until(
        settings.kafka_bootstrap,
        output_topics(catalog),
        lambda rs: done(parse(rs, catalog, wanted)),
        settle=settle,
        timeout=timeout,
    )
    return parse(records, catalog, wanted)


def timer_cause(rule: str, due: datetime) -> dict[str, Any]:
    return {"timer": {"rule": rule, "due_at": iso(due)}}
