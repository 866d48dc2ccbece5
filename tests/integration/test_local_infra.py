"""The local infrastructure harness against the real thing: a KRaft broker and redis-server."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import defaultdict

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord, TopicPartition

from engine.local import LocalRedis, free_port
from engine.local.kafka import metadata_brokers
from engine.local.kafka_config import INDEX_BYTES
from engine.local.redis import ping
from tests.conftest import KAFKA_ENV


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
        # The broker answers from its metadata cache, which applies the creation a
        # moment after the controller committed it (error 3 until then).
        deadline = time.monotonic() + 10
        while True:
            described = await admin.describe_topics([name])
            if described[0]["error_code"] != 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    assert len(described) == 1
    assert described[0]["error_code"] == 0
    assert len(described[0]["partitions"]) == partitions


async def _consume(
    bootstrap: str, topic: str, group: str, expected: int, **config: object
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **config,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    records.extend(part)
        # Nothing more than expected shows up.
        extra = await consumer.getmany(timeout_ms=1000)
        records.extend(r for part in extra.values() for r in part)
    finally:
        await consumer.stop()
    return records


def test_metadata_probe_sees_one_unfenced_broker(kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    brokers = metadata_brokers(int(port), host=host)
    assert [(b[1], b[2]) for b in brokers] == [(host, int(port))]


@pytest.mark.asyncio
async def test_keyed_messages_round_trip_three_partitions(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"infra-keys-{unique_name}"
    await _create_topic(kafka_bootstrap, topic, partitions=3)

    sent = [(f"customer-{i}".encode(), f"event-{i}".encode()) for i in range(10)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topic, value=v, key=k) for k, v in sent]
    finally:
        await producer.stop()
    partition_of = {k: m.partition for (k, _), m in zip(sent, metas, strict=True)}
    assert set(partition_of.values()) <= {0, 1, 2}
    assert len(set(partition_of.values())) > 1, "10 keys should spread over partitions"

    records = await _consume(kafka_bootstrap, topic, f"g-{unique_name}", expected=10)
    assert sorted((r.key, r.value) for r in records) == sorted(sent)
    for r in records:
        assert r.partition == partition_of[r.key]
    by_partition: defaultdict[int, list[int]] = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))


@pytest.mark.asyncio
async def test_transactions_read_committed(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"infra-txn-{unique_name}"
    await _create_topic(kafka_bootstrap, topic, partitions=1)

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"txn-{unique_name}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, key=b"k", value=f"committed-{i}".encode())
        await producer.begin_transaction()
        await producer.send(topic, key=b"k", value=b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, key=b"k", value=b"committed-last")
    finally:
        await producer.stop()

    committed = await _consume(
        kafka_bootstrap,
        topic,
        f"rc-{unique_name}",
        expected=4,
        isolation_level="read_committed",
    )
    assert [r.value for r in committed] == [
        b"committed-0",
        b"committed-1",
        b"committed-2",
        b"committed-last",
    ]

    # read_uncommitted sees the aborted record too: the abort really happened in the log.
    everything = await _consume(
        kafka_bootstrap,
        topic,
        f"ru-{unique_name}",
        expected=5,
        isolation_level="read_uncommitted",
    )
    assert b"aborted" in [r.value for r in everything]

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    # 5 data records + 2 commit markers + 1 abort marker.
    assert end == 8


@pytest.mark.asyncio
async def test_new_topics_get_small_segment_indexes(kafka_bootstrap: str, unique_name: str) -> None:
    """The local broker's segment indexes are small sparse files (see
    engine/local/kafka_config.py): a new topic inherits the size."""
    if os.environ.get(KAFKA_ENV, "").strip():
        pytest.skip(f"{KAFKA_ENV} names a broker this project did not configure")
    topic = f"infra-index-{unique_name}"
    await _create_topic(kafka_bootstrap, topic, partitions=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"segment.index.bytes": None})]
        )
    finally:
        await admin.close()
    [(_error, _message, _type, _name, entries)] = response.resources
    found = {entry[0]: entry[1] for entry in entries}
    assert int(found["segment.index.bytes"]) == INDEX_BYTES < 10 * 1024 * 1024


@pytest.mark.asyncio
async def test_redis_set_get(redis_url: str, unique_name: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.ping()
        key = f"infra:{unique_name}"
        assert await client.set(key, "hello", ex=60)
        assert await client.get(key) == b"hello"
        assert await client.incr(f"{key}:n") == 1
        info = await client.info("persistence")
        assert info["aof_enabled"] == 0
    finally:
        await client.aclose()


def test_local_redis_stop_closes_port() -> None:
    server = LocalRedis()
    server.start(timeout=20)
    port = server.port
    assert server.running
    assert ping(port)
    server.stop()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.stop()  # idempotent


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
