"""The throughput window of the benchmark, on scripted commit observations."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.settings import Settings
from tests.bench.engine_runs import MAX_LATENCY_EVENTS, measure_latency
from tests.bench.kafka_util import Progress
from tests.bench.procs import Proc


class _Scripted(Progress):
    """Commits observed in turn; the last one repeats."""

    def __init__(self, values: list[int]) -> None:
        self.values = values

    async def committed(self) -> int:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


class _Running(Proc):
    """This process, standing in for a worker that became ready ``ready_in`` s from now."""

    def __init__(self, tmp_path: Path, ready_in: float) -> None:
        super().__init__("fake", [], {}, tmp_path / "fake.log")
        self.started_at = time.monotonic() - 1.0
        self.ready_in = ready_in

    @property
    def pid(self) -> int:
        return os.getpid()

    def check_alive(self) -> None:
        return None

    def poll_ready(self) -> bool:
        if self.ready_at is None:
            self.ready_at = time.monotonic() + self.ready_in
        return True


async def test_a_run_done_before_the_ready_line_was_seen_is_timed_from_the_start(
    tmp_path: Path,
) -> None:
    proc = _Running(tmp_path, ready_in=60.0)  # seen ready only after all the commits
    got = await _Scripted([500, 1000]).measure(
        1000, [proc], warmup_records=0, warmup_s=5.0, window_s=1.0, poll_s=0.01
    )
    assert got.method.startswith("fallback")
    assert got.records == 1000
    # From the process start (1 s ago) to the last commit: about 1 s, never a few µs.
    assert 0.9 <= got.seconds <= 30.0
    assert got.eps <= 1000 / 0.9


async def test_a_ready_line_seen_with_the_last_commit_does_not_shrink_the_window(
    tmp_path: Path,
) -> None:
    proc = _Running(tmp_path, ready_in=0.0)  # seen in the poll that also sees all done
    got = await _Scripted([1000]).measure(
        1000, [proc], warmup_records=0, warmup_s=5.0, window_s=1.0, poll_s=0.01
    )
    assert got.method.startswith("fallback")
    assert got.seconds >= 0.9  # from the process start, not from the ready line
    assert got.eps <= 1000 / 0.9


async def test_a_warm_window_spans_two_observed_commits(tmp_path: Path) -> None:
    proc = _Running(tmp_path, ready_in=-1.0)
    got = await _Scripted([100, 200, 300, 400, 500, 600]).measure(
        600, [proc], warmup_records=150, warmup_s=0.0, window_s=10.0, poll_s=0.02
    )
    assert got.method == "commit window after warm-up"
    assert got.records == 600 - 200
    assert got.eps == pytest.approx(got.records / got.seconds)


@pytest.mark.parametrize("rate", [0.0, MAX_LATENCY_EVENTS * 10.0])
async def test_a_latency_run_out_of_range_is_refused_before_generating_input(
    rate: float,
) -> None:
    with pytest.raises(ValueError, match="out of range"):
        await measure_latency(Settings(), [], rate, 1.0, 1)
