from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.admin import create_topics
from engine.settings import Settings
from tests.integration.worker_proc import WorkerProcess


def make_settings(kafka_bootstrap: str, name: str, data: Path, **extra: object) -> Settings:
    return Settings().with_(
        kafka_bootstrap=kafka_bootstrap,
        app_id=f"app-{name}",
        topic_prefix=f"{name}.",
        touchpoints_topic=f"{name}.touchpoints",
        partitions=2,
        data_dir=str(data),
        log_level="info",
        **extra,
    )


@pytest.fixture(scope="module")
def module_name() -> str:
    import uuid

    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def running_worker(
    kafka_bootstrap: str, module_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker on its own topics, shared by the tests of a module."""
    data = tmp_path_factory.mktemp("worker")
    settings = make_settings(kafka_bootstrap, module_name, data)
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(settings, data / "worker.log")
    worker.start()
    yield worker
    worker.stop()
