"""deploy/prometheus/ passes the real promtool: config, rules, rule unit tests, metrics lint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tests.deploy.populated import populated_metrics

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not on PATH: run deploy/bootstrap.sh (Debian package prometheus)")
    return found


def run(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [promtool, *args],
        input=None if stdin is None else stdin.decode("utf-8"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done


def test_scrape_config_is_valid_and_loads_the_alert_rules(promtool: str) -> None:
    done = run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_alert_rules_are_valid(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(PROM / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_cover_what_operators_need() -> None:
    text = (PROM / "alerts.yml").read_text()
    for alert in (
        "JourneyWorkerDown",
        "JourneyConsumerLagHigh",
        "JourneyDeadLetterRateHigh",
        "JourneyNoEvents",
        "JourneyProcessingLatencyHigh",
        "JourneyTimerFireLagHigh",
    ):
        assert f"alert: {alert}\n" in text


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    tests = sorted(str(p) for p in (PROM / "tests").glob("*.yml"))
    assert tests
    done = run(promtool, "test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_tests_catch_a_changed_threshold(promtool: str, tmp_path: Path) -> None:
    """The unit tests fail when the lag threshold moves above what they feed in."""
    rules = (PROM / "alerts.yml").read_text()
    assert "journey_consumer_lag_records) > 10000" in rules
    (tmp_path / "alerts.yml").write_text(
        rules.replace(
            "journey_consumer_lag_records) > 10000", "journey_consumer_lag_records) > 20000"
        )
    )
    (tmp_path / "tests").mkdir()
    shutil.copy(PROM / "tests" / "alerts_test.yml", tmp_path / "tests" / "alerts_test.yml")
    done = run(promtool, "test", "rules", str(tmp_path / "tests" / "alerts_test.yml"))
    assert done.returncode != 0
    assert "JourneyConsumerLagHigh" in done.stdout + done.stderr


def test_every_engine_metric_passes_promtool_lint(promtool: str) -> None:
    metrics = populated_metrics()
    scrape = generate_latest(metrics.registry)
    done = run(promtool, "check", "metrics", stdin=scrape)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""
    assert done.stderr.strip() == ""
    # Every family of the registry is in the scrape with at least one sample.
    lines = scrape.decode().splitlines()
    for family in metrics.registry.collect():
        assert family.samples, f"{family.name} has no sample in populated_metrics()"
        first = family.samples[0].name
        assert any(line.startswith((f"{first} ", f"{first}{{")) for line in lines)


def test_the_lint_check_reports_a_metric_off_the_conventions(promtool: str) -> None:
    registry = CollectorRegistry()
    Gauge("journey_lag_milliseconds", "lag", registry=registry).set(1)
    done = run(promtool, "check", "metrics", stdin=generate_latest(registry))
    assert done.returncode != 0
    assert 'use base unit "seconds"' in done.stdout + done.stderr
