"""Where a latency run's time goes: the parts of each sample and of the slowest ones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.bench import stage_reader
from tests.bench.engine_runs import _epoch, latency_parts, match
from tests.bench.report import _latency_detail, cpu_per_event, highest_rate_within, latency_curve


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


def test_changes_are_matched_to_their_published_events_and_split_into_parts() -> None:
    wall = 1_800_000_000.0  # wall clock minus monotonic
    # Published at monotonic 10.0; applied 5 ms later, handed over 2 ms after that,
    # received 3 ms after that.
    processed = datetime.fromtimestamp(wall + 10.005, UTC).isoformat().replace("+00:00", "Z")
    raw = [
        (10.010, round((wall + 10.007) * 1000), orjson.dumps(_change("m1", processed))),
        (10.020, round((wall + 10.007) * 1000), orjson.dumps(_change("not-ours", processed))),
        (10.030, round((wall + 10.007) * 1000), orjson.dumps({"customer_id": "c"})),
        (10.040, round((wall + 10.007) * 1000), None),
    ]
    rows = stage_reader.rows(raw)
    assert [r[0] for r in rows] == ["m1", "not-ours", None, None]

    [(sent, latency, to_worker, in_worker, to_reader)] = match({"m1": 10.0}, rows, wall)
    assert sent == 10.0
    assert latency == pytest.approx(0.010)
    assert to_worker == pytest.approx(0.005, abs=2e-6)
    assert in_worker == pytest.approx(0.002, abs=2e-6)
    assert to_reader == pytest.approx(0.003, abs=2e-6)


def test_the_reader_rows_survive_their_file(tmp_path: Path) -> None:
    rows = stage_reader.rows([(1.5, 1_700_000_000_123, orjson.dumps(_change("m", "x")))])
    path = tmp_path / "rows.json"
    path.write_bytes(orjson.dumps(rows))
    assert stage_reader.load(path) == [("m", 1.5, "x", 1_700_000_000_123)]


def _change(message_id: str, processed_at: str) -> dict[str, Any]:
    return {"cause": {"message_id": message_id}, "processed_at": processed_at}


def test_the_report_points_out_a_wall_clock_that_moved_during_the_run() -> None:
    part = {"p50": 0.01, "p99": 0.02, "slowest_1pct_mean": 0.02}
    run: dict[str, Any] = {
        "parts": {"to_worker_s": part, "in_worker_s": part, "to_reader_s": part},
        "cores": None,
    }
    steady = "\n".join(_latency_detail({**run, "wall_clock_moved_s": 0.0004}, None))
    moved = "\n".join(_latency_detail({**run, "wall_clock_moved_s": -0.035}, None))
    assert "wall clock moved" not in steady
    assert "The wall clock moved by -35 ms" in moved


def _run(rate: float, p99: float) -> dict[str, Any]:
    return {
        "achieved_rate_eps": rate,
        "p50_s": p99 / 3,
        "p99_s": p99,
        "max_s": p99 * 1.5,
        "cores": {"workers": rate / 10_000, "machine": rate / 5_000},
    }


def test_the_curve_holds_every_live_run_by_rate_with_the_half_rate_run() -> None:
    results = {
        "latency": _run(7_000.0, 0.150),
        "latency_curve": [
            {"share": 0.375, **_run(5_250.0, 0.080)},
            {"share": 0.25, **_run(3_500.0, 0.020)},
        ],
    }
    curve = latency_curve(results)
    assert [p["share"] for p in curve] == [0.25, 0.375, 0.5]
    assert [p["rate_eps"] for p in curve] == [3_500.0, 5_250.0, 7_000.0]
    assert curve[2]["p99_s"] == 0.150
    assert curve[2]["worker_cores"] == 0.7
    assert highest_rate_within(curve, 0.1) == 5_250.0
    assert highest_rate_within(curve, 0.2) == 7_000.0
    assert highest_rate_within(curve, 0.01) is None


def test_a_rate_counts_only_when_every_slower_rate_met_the_target_too() -> None:
    # Noise: the middle rate missed, the fastest happened to meet it.
    points = latency_curve(
        {
            "latency": _run(7_000.0, 0.090),
            "latency_curve": [
                {"share": 0.25, **_run(3_500.0, 0.020)},
                {"share": 0.375, **_run(5_250.0, 0.130)},
            ],
        }
    )
    assert highest_rate_within(points, 0.1) == 3_500.0


def test_without_curve_runs_the_half_rate_run_alone_is_the_curve() -> None:
    curve = latency_curve({"latency": _run(7_000.0, 0.090)})
    assert [p["share"] for p in curve] == [0.5]
    assert highest_rate_within(curve, 0.1) == 7_000.0
