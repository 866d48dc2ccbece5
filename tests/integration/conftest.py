from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.admin import create_topics
from engine.settings import Settings
from tests.integration.worker_proc import WorkerProcess


def make_settings(
    kafka_bootstrap: str, name: str, data: Path, *, redis_url: str = "", **extra: object
) -> Settings:
    """A worker's settings on its own topics; the Redis profile store on ``redis_url``,
    or switched off without one."""
    values: dict[str, object] = {
        "kafka_bootstrap": kafka_bootstrap,
        "redis_enabled": bool(redis_url),
        "redis_url": redis_url or Settings().redis_url,
        "redis_prefix": f"{name}:",
        "app_id": f"app-{name}",
        "topic_prefix": f"{name}.",
        "touchpoints_topic": f"{name}.touchpoints",
        "partitions": 2,
        "data_dir": str(data),
        "log_level": "info",
    }
    return Settings().with_(**{**values, **extra})


@pytest.fixture(scope="module")
def module_name() -> str:
    import uuid

    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def running_worker(
    kafka_bootstrap: str,
    redis_url: str,
    module_name: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """One worker on its own topics, shared by the tests of a module."""
    data = tmp_path_factory.mktemp("worker")
    settings = make_settings(kafka_bootstrap, module_name, data, redis_url=redis_url)
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(settings, data / "worker.log")
    worker.start()
    yield worker
    code = worker.stop()
    assert code == 0, f"worker exited with {code} when stopped:\n{worker.log()[-3000:]}"
