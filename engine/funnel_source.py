"""Where ``journey funnel`` gets its funnel: the stage-changes topic or a funnel JSON."""

from __future__ import annotations

import logging
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.journey import LifecycleModel
from engine.journey.funnel import Funnel, FunnelError
from engine.messages import BadMessage, parse_stage_change

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The funnel's source cannot be read."""


@dataclass(frozen=True, slots=True)
class TopicRead:
    records: int
    skipped: int  # records that are not stage changes (left out, reported)
    first_skip: str  # why the first skipped record was left out


async def funnel_from_topic(
    bootstrap: str,
    topic: str,
    models: list[LifecycleModel],
    *,
    idle_timeout_s: float = 30.0,
) -> tuple[Funnel, TopicRead]:
    """Read ``topic`` from its beginning to the end offsets taken at the start."""
    funnel = Funnel(models)
    partitions = await topic_partitions(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(max(idle_timeout_s, 5.0) * 1000),
    )
    try:
        await consumer.start()
    except Exception as exc:
        await consumer.stop()
        raise SourceError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    records = skipped = 0
    first_skip = ""
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, batch in batches.items():
                for record in batch:
                    if record.offset >= end[tp]:
                        break
                    records += 1
                    try:
                        funnel.add(parse_stage_change(record.value or b""))
                    except BadMessage as exc:
                        skipped += 1
                        if not first_skip:
                            first_skip = f"{tp.topic}[{tp.partition}]@{record.offset}: {exc}"
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if batches:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise SourceError(
                    f"no records from {topic} for {idle_timeout_s:.0f}s before its end offsets"
                )
    finally:
        await consumer.stop()
    return funnel, TopicRead(records=records, skipped=skipped, first_skip=first_skip)


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``; :class:`SourceError` if it cannot be read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
    except Exception as exc:
        await admin.close()
        raise SourceError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
    try:
        if topic not in await admin.list_topics():
            raise SourceError(f"topic {topic!r} does not exist on {bootstrap}")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = sorted(p["partition"] for d in described for p in d["partitions"])
    if not found:
        raise SourceError(f"topic {topic!r} on {bootstrap} has no partitions")
    return found


def read_document(source: str, timeout_s: float = 30.0) -> Any:
    """A funnel JSON document from a file, an http(s) URL, or ``-`` (standard input)."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        elif source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=timeout_s) as answer:
                data = answer.read()
        else:
            data = Path(source).read_bytes()
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise SourceError(f"cannot read {source}: {exc}") from exc
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{source} is not JSON: {exc}") from exc


def funnel_from_document(source: str, timeout_s: float = 30.0) -> Funnel:
    doc = read_document(source, timeout_s)
    try:
        return Funnel.from_dict(doc)
    except FunnelError as exc:
        raise SourceError(f"{source}: {exc}") from exc
