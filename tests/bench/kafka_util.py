"""Broker helpers: topics, a fast batch producer and consumer-group progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from engine.metrics import processed_events, scrape
from tests.bench.procs import CpuSnapshot, Proc


async def create_topic(
    bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        for _ in range(100):  # a new topic may show no partitions for a moment
            described = await admin.describe_topics([name])
            if described and len(described[0]["partitions"]) == partitions:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {name} did not get {partitions} partitions")
    finally:
        await admin.close()


async def produce_fast(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]
) -> tuple[int, int]:
    """Produce ``(key, value)`` records in whole batches; returns (count, bytes).

    Partitions as the Java client and aiokafka do (murmur2 of the key), so a record
    lands where a keyed ``send`` would put it. About five times faster than
    ``send`` per record.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    count = size = 0
    try:
        parts = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        batches: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []
        for key, value in records:
            p = partitioner(key, parts, parts)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                pending.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            count += 1
            size += len(value)
            if len(pending) >= 64:
                await asyncio.gather(*pending)
                pending.clear()
        for p, batch in batches.items():
            batch.close()
            pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count, size


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # a new topic may show no partitions for a moment
            described = await admin.describe_topics([topic])
            if described and described[0]["partitions"]:
                return sorted(p["partition"] for p in described[0]["partitions"])
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic} not found")
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    parts = await partitions_of(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def total_records(bootstrap: str, topic: str) -> int:
    return sum((await end_offsets(bootstrap, topic)).values())


@dataclass
class Throughput:
    """Events/s of one consumer group over a window of its commits."""

    eps: float
    records: int
    seconds: float
    method: str
    committed_at_stop: int
    commits: list[tuple[float, int]] = field(default_factory=list)
    #: Average cores used in the window by each process, and by the whole machine.
    cpu_cores: list[float] = field(default_factory=list)
    machine_busy_cores: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "eps": round(self.eps, 1),
            "records_in_window": self.records,
            "window_s": round(self.seconds, 3),
            "method": self.method,
            "committed_at_stop": self.committed_at_stop,
            "commit_observations": len(self.commits),
            "cpu_cores": [round(c, 3) for c in self.cpu_cores],
            "machine_busy_cores": round(self.machine_busy_cores, 3),
        }


class Progress:
    """How many input records a contender is done with, polled; ``label`` names it."""

    label = "contender"

    async def __aenter__(self) -> Progress:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def committed(self) -> int:
        raise NotImplementedError

    async def wait_for(self, target: int, procs: list[Proc], timeout: float) -> float:
        """Wait until the group committed ``target`` records; returns when it did."""
        deadline = time.monotonic() + timeout
        while await self.committed() < target:
            for proc in procs:
                proc.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"group {self.label} did not commit {target} in {timeout}s")
            await asyncio.sleep(0.1)
        return time.monotonic()

    async def measure(
        self,
        total: int,
        procs: list[Proc],
        *,
        warmup_records: int,
        warmup_s: float,
        window_s: float,
        poll_s: float = 0.25,
        startup_timeout: float = 180.0,
    ) -> Throughput:
        """Sustained events/s between two observed commits, after the warm-up.

        The window opens at the first observed commit that is past ``warmup_records``,
        at least ``warmup_s`` after the group's first commit and after every process
        logged its ready line; it closes at the last observed commit once everything
        is committed or ``window_s`` has passed. Both ends are commit observations,
        so the commit interval costs at most one poll period of precision at each end.
        CPU use (per process and machine-wide) is taken at the same two observations.
        """
        commits: list[tuple[float, int]] = []
        first_at: float | None = None
        start: tuple[float, int] | None = None
        cpu_start: CpuSnapshot | None = None
        cpu_end: CpuSnapshot | None = None
        deadline = time.monotonic() + startup_timeout
        while True:
            all_ready = all(p.poll_ready() for p in procs)
            for proc in procs:
                proc.check_alive()
            now = time.monotonic()
            value = await self.committed()
            if value > 0 and (not commits or value != commits[-1][1]):
                commits.append((now, value))
                cpu_end = CpuSnapshot(procs)
                first_at = first_at if first_at is not None else now
                if (
                    start is None
                    and all_ready
                    and value >= warmup_records
                    and now - first_at >= warmup_s
                    and value < total
                ):
                    start = (now, value)
                    cpu_start = cpu_end
            if value >= total:
                break
            if start is not None and now - start[0] >= window_s and commits[-1][0] > start[0]:
                break
            if start is None and now > deadline:
                raise RuntimeError(
                    f"group {self.label} got no warm commit in {startup_timeout:.0f}s "
                    f"(committed {value} of {total})"
                )
            await asyncio.sleep(poll_s)
        end = commits[-1]
        method = "commit window after warm-up"
        if start is None or end[0] <= start[0]:
            # Everything was done within a commit interval or two (tiny inputs): fall
            # back to the whole run from the last process being ready to the last
            # commit, a lower bound that includes the start of processing.
            ready = max(p.ready_at or p.started_at for p in procs)
            if ready > commits[0][0] - poll_s:
                # The ready line was seen in the poll that saw records committed, or
                # later (both are polled): the work may have begun a poll earlier,
                # so time it from the processes' start.
                ready = max(p.started_at for p in procs)
            start = (ready, 0)
            method = "fallback: ready to last commit (input too small for a warm window)"
        seconds = max(end[0] - start[0], 1e-6)
        records = end[1] - start[1]
        result = Throughput(records / seconds, records, seconds, method, end[1], commits)
        if cpu_start is not None and cpu_end is not None and cpu_end.at > cpu_start.at:
            result.cpu_cores, result.machine_busy_cores = cpu_end.cores_since(cpu_start)
        return result


class GroupProgress(Progress):
    """Polls a consumer group's committed offsets on one topic (sum over partitions)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.group = self.label = group
        self.topic = topic
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> GroupProgress:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def committed(self) -> int:
        try:
            offsets = await self.admin.list_consumer_group_offsets(self.group)
        except KafkaError:  # no such group yet, or its coordinator is still loading
            return 0
        return sum(
            meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.topic and meta.offset > 0
        )


class MetricsProgress(Progress):
    """Sums the touchpoints engine workers are done with, scraped from their /metrics
    (``engine.metrics.processed_events``); the latest complete scrape counts."""

    def __init__(self, urls: list[str], label: str) -> None:
        self.urls = urls
        self.label = label
        self._last = 0

    async def committed(self) -> int:
        try:
            pages = await asyncio.gather(*(asyncio.to_thread(scrape, url) for url in self.urls))
        except OSError:  # a worker's web server is not up yet
            return self._last
        self._last = sum(processed_events(page) for page in pages)
        return self._last
