"""Where a latency run's time goes: the parts of each sample and of the slowest ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.bench.engine_runs import _epoch, latency_parts
from tests.bench.report import cpu_per_event


def test_each_part_has_its_percentiles_and_its_mean_over_the_slowest_samples() -> None:
    # Sample i: latency i ms, half of it before the worker, 1 ms in it, the rest after.
    samples = [(i / 1000, i / 2000, 0.001, i / 2000 - 0.001) for i in range(1, 201)]
    parts = latency_parts(samples, p99=0.198)  # the nearest-rank p99 of 1..200 ms

    assert parts["to_worker_s"]["p50"] == pytest.approx(0.050)  # 100th of 200
    assert parts["to_worker_s"]["p99"] == pytest.approx(0.099)  # 198th
    assert parts["in_worker_s"] == {"p50": 0.001, "p99": 0.001, "slowest_1pct_mean": 0.001}
    # The slowest: the samples of 198, 199 and 200 ms.
    assert parts["to_worker_s"]["slowest_1pct_mean"] == pytest.approx((0.099 + 0.0995 + 0.1) / 3)
    assert parts["to_reader_s"]["slowest_1pct_mean"] == pytest.approx(
        (0.098 + 0.0985 + 0.099) / 3, abs=1e-4
    )


def test_the_tail_is_told_apart_from_the_bulk() -> None:
    # Most samples spend their time after the worker; the slow ones before it.
    bulk = [(0.010, 0.002, 0.001, 0.007)] * 990
    slow = [(0.300, 0.290, 0.002, 0.008)] * 10
    parts = latency_parts(bulk + slow, p99=0.300)
    assert parts["to_worker_s"]["p50"] == 0.002
    assert parts["to_worker_s"]["slowest_1pct_mean"] == 0.290
    assert parts["to_reader_s"]["slowest_1pct_mean"] == 0.008


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        latency_parts([], p99=0.0)


def test_the_engine_s_timestamps_are_read_to_the_millisecond() -> None:
    expected = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC).timestamp()
    assert _epoch("2026-11-23T12:00:00.250Z") == expected


def test_cpu_per_event_divides_the_worker_s_cores_by_its_rate() -> None:
    results: dict[str, Any] = {
        "engine": {"cpu_cores": [0.9], "eps": 15_000.0},
        "latency": {"cores": {"workers": 0.8}, "achieved_rate_eps": 7_500.0},
        "latency_backfill": {"cores": None, "achieved_rate_eps": 7_500.0},
    }
    assert cpu_per_event(results) == {"backlog": 60.0, "live": 106.7, "backfill": None}
    results["engine"]["cpu_cores"] = []
    assert cpu_per_event(results)["backlog"] is None
