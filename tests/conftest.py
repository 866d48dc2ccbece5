"""Shared fixtures: the real local Kafka broker and redis-server (engine.local).

``kafka_bootstrap`` / ``redis_url`` start one broker / server per test session on free
loopback ports and stop them at the end. Set ``JOURNEY_TEST_KAFKA`` (bootstrap, e.g.
``127.0.0.1:9092``) or ``JOURNEY_TEST_REDIS`` (URL) to use an already running one
instead. Nothing is skipped: if a server cannot start, the fixture errors loudly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from engine.local import LocalKafka, LocalRedis

KAFKA_ENV = "JOURNEY_TEST_KAFKA"
REDIS_ENV = "JOURNEY_TEST_REDIS"

_startup_notes: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to the real servers."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for note in _startup_notes:
        terminalreporter.write_line(note)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers (``127.0.0.1:PORT``) of a real single-node KRaft broker."""
    external = os.environ.get(KAFKA_ENV, "").strip()
    if external:
        yield external
        return
    log_path = tmp_path_factory.mktemp("kafka") / "broker.log"
    kafka = LocalKafka(log_path=log_path)
    try:
        kafka.start()
        _startup_notes.append(
            f"local Kafka broker {kafka.bootstrap} ready in {kafka.startup_seconds:.1f}s "
            f"(log: {log_path})"
        )
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL (``redis://127.0.0.1:PORT/0``) of a real, empty redis-server."""
    external = os.environ.get(REDIS_ENV, "").strip()
    if external:
        yield external
        return
    log_path = tmp_path_factory.mktemp("redis") / "redis.log"
    redis = LocalRedis(log_path=log_path)
    try:
        redis.start()
        _startup_notes.append(f"local redis-server {redis.url} ready (log: {log_path})")
        yield redis.url
    finally:
        redis.stop()


@pytest.fixture
def unique_name() -> str:
    """A short unique suffix for topic names, consumer groups and keys."""
    return uuid.uuid4().hex[:10]
