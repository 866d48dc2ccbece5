"""docker-compose.yml parses with `docker compose config` and runs the same stack."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> list[str]:
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/docker/install-compose.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return shlex.split(out.stdout.strip())


def config(compose: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose, "-f", str(path), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=path.parent,
    )


def test_compose_file_is_valid_and_runs_the_whole_stack(compose: list[str]) -> None:
    done = config(compose, ROOT / "docker-compose.yml")
    assert done.returncode == 0, done.stderr
    project = json.loads(done.stdout)
    services = project["services"]
    assert set(services) == {"kafka", "redis", "topics", "worker", "simulator"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert worker["environment"]["JOURNEY_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert worker["environment"]["JOURNEY_REDIS_URL"] == "redis://redis:6379/0"
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["simulator"]["command"][0] == "simulate"
    dockerfile = ROOT / worker["build"]["dockerfile"]
    assert dockerfile.exists()


def test_a_broken_compose_file_is_rejected(compose: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("services:", "servics:"))
    done = config(compose, broken)
    assert done.returncode != 0
    assert "servics" in done.stderr
