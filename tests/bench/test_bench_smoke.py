"""The whole benchmark at tiny sizes on the session broker, so it never rots.

No timing is asserted: only that every phase ran and the report is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.bench.config import BenchConfig
from tests.bench.latency_phases import PHASES
from tests.bench.report import REQUIRED_KEYS
from tests.bench.runner import run_bench
from tests.conftest import KAFKA_ENV, REDIS_ENV

pytestmark = pytest.mark.integration


def test_benchmark_runs_end_to_end_and_writes_a_complete_report(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    cfg = BenchConfig.scaled(
        tmp_path / "out",
        0.002,  # 200 customers, about 2,000 events
        recovery_customers=10_000,
        window_s=3.0,
        latency_s=3.0,
    )
    built = run_bench(cfg, kafka_bootstrap, redis_url)

    on_disk = json.loads((cfg.out / "report.json").read_text("utf-8"))
    assert on_disk == json.loads(json.dumps(built))
    for key in REQUIRED_KEYS:
        value = on_disk[key]
        assert type(value) in (int, float), (key, value)
        assert value > 0, (key, value)
    assert on_disk["engine_vs_raw"] == pytest.approx(on_disk["engine_eps"] / on_disk["raw_eps"])
    assert on_disk["engine_vs_naive"] == pytest.approx(
        on_disk["engine_eps"] / on_disk["naive_faust_eps"]
    )
    assert on_disk["latency_p99_s"] >= on_disk["latency_p50_s"]
    assert on_disk["latency_backfill_p99_s"] >= on_disk["latency_backfill_p50_s"]
    assert on_disk["details"]["latency"]["live"] is True
    assert on_disk["details"]["latency_backfill"]["live"] is False
    for run in ("latency", "latency_backfill"):
        lat = on_disk["details"][run]
        # Each part of a stage change's way, from the worker's own stamps (ms precision).
        assert set(lat["parts"]) == {"to_worker_s", "in_worker_s", "to_reader_s"}
        for part in lat["parts"].values():
            assert -0.002 <= part["p50"] <= part["p99"] <= lat["max_s"] + 0.002, (run, part)
        assert lat["cores"]["workers"] > 0, lat
        assert lat["cores"]["benchmark_process"] > 0, lat
        # The session's own broker and redis-server run here: found by their ports.
        if not os.environ.get(KAFKA_ENV):
            assert lat["cores"]["broker"] > 0, lat
        if not os.environ.get(REDIS_ENV):
            assert "redis_server" in lat["cores"], lat
        # The measured window in phases: every sample in one of them.
        assert len(lat["phases"]) == PHASES, lat["phases"]
        assert sum(p["samples"] for p in lat["phases"]) == lat["samples"], lat["phases"]
        assert all(p["worker_cores"] > 0 for p in lat["phases"]), lat["phases"]
    assert on_disk["worker_cpu_us_per_event"]["live"] > 0
    # The p99 by rate: one live run per configured share, then the one at half the rate.
    curve = on_disk["latency_curve"]
    assert [p["share"] for p in curve] == [*sorted(cfg.latency_curve), 0.5]
    rates = [p["rate_eps"] for p in curve]
    assert rates == sorted(rates)
    assert rates[0] > 0
    for point, run in zip(curve, on_disk["details"]["latency_curve"], strict=False):
        assert point["rate_eps"] == pytest.approx(run["achieved_rate_eps"], abs=0.1)
        assert run["live"] is True
        assert 0 < point["p50_s"] <= point["p99_s"] <= point["max_s"]
    best = on_disk["latency_p99_within_target_max_eps"]
    assert best is None or best in rates
    details = on_disk["details"]
    assert details["input"]["customers"] == 200
    assert details["engine_2workers"]["processes"] == 2
    assert details["recovery"]["changelog"]["records"] == 10_000
    assert {"memory", "rocksdb"} <= set(details["recovery"])
    for run in ("engine", "naive_faust"):
        for code, log in zip(details[run]["exit_codes"], details[run]["logs"], strict=True):
            assert code == 0, (run, code, _tail(Path(log)))
    assert details["engine"]["trigger_decisions"] > 0  # triggers are on
    assert on_disk["timer_lag_p99_s"] >= on_disk["timer_lag_p50_s"]
    memory = details["timers"]["memory"]
    assert memory["changelog"]["records"] == memory["pending_timers"] == 10_000
    assert details["timers"]["lag"]["timers"] == cfg.timer_lag_timers

    summary = (cfg.out / "report.md").read_text("utf-8")
    for heading in ("## Throughput", "## Latency", "## Table recovery", "## Timers", "## Method"):
        assert heading in summary
    assert "Live traffic by rate" in summary


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text("utf-8", "replace").splitlines()[-lines:])
