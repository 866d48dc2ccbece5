"""A latency run in phases: samples by publish time, cores and preemptions between snapshots."""

from __future__ import annotations

import os
import socket

import pytest

from tests.bench.engine_runs import _cores, percentile
from tests.bench.latency_phases import by_phase, phase_starts
from tests.bench.procs import CpuSnapshot, listening_pid, local_services
from tests.bench.report import _latency_detail


def snapshot(
    at: float, cpu_s: list[float], machine_s: float, preempted: list[int] | None = None
) -> CpuSnapshot:
    """A snapshot as read from /proc at ``at``: CPU seconds of each process (the
    worker first), of the machine, and preemptions of each (none by default)."""
    snap = CpuSnapshot.__new__(CpuSnapshot)
    snap.at = at
    snap.procs = cpu_s
    snap.machine = machine_s
    snap.preempted = preempted or [0] * len(cpu_s)
    return snap


def test_the_measured_window_is_cut_evenly() -> None:
    assert phase_starts(100.0, 30.0, 3) == [100.0, 110.0, 120.0]


def test_each_sample_goes_to_the_phase_its_event_was_published_in() -> None:
    snaps = [
        snapshot(0.0, [0.0, 0.0], 0.0),
        snapshot(10.0, [5.0, 0.0], 12.0, [1_000, 0]),  # worker 0.5 cores, machine 1.2, 100/s
        snapshot(20.0, [14.0, 0.0], 30.0, [4_000, 0]),  # worker 0.9 cores, machine 1.8, 300/s
    ]
    early = [(t / 10, 0.010 + t / 10_000) for t in range(100)]  # 10-20 ms, published 0-9.9 s
    late = [(10 + t / 10, 0.050 + t / 1_000) for t in range(100)]  # 50-149 ms, 10-19.9 s
    phases = by_phase(early + late, snaps, 1, percentile)

    assert [p["samples"] for p in phases] == [100, 100]
    assert phases[0]["p50_s"] == pytest.approx(0.0149)  # 50th of 100
    assert phases[1]["p99_s"] == pytest.approx(0.148)  # 99th of 100
    assert [p["worker_cores"] for p in phases] == [0.5, 0.9]
    assert [p["machine_cores"] for p in phases] == [1.2, 1.8]
    assert [p["worker_preempted_per_s"] for p in phases] == [100, 300]


def test_a_phase_without_samples_has_no_percentiles_and_reads_as_such() -> None:
    snaps = [snapshot(0.0, [0.0, 0.0], 0.0), snapshot(1.0, [0.5, 0.0], 1.0, [10, 0])]
    [phase] = by_phase([(5.0, 0.01)], snaps, 1, percentile)  # published after the phase
    assert phase["samples"] == 0
    assert phase["p50_s"] is None
    assert phase["p99_s"] is None

    run = {
        "parts": {},
        "wall_clock_moved_s": 0.0,
        "cores": None,
        "phases": [phase, {**phase, "samples": 3, "p50_s": 0.012, "p99_s": 0.0875}],
    }
    text = "\n".join(_latency_detail(run, None))
    assert "| 1 of 2 | n/a | n/a | 0.50 | 1.00 | 10 |" in text
    assert "| 2 of 2 | 12 ms | 88 ms |" in text


def test_a_snapshot_reads_the_preemptions_of_a_real_process() -> None:
    first = CpuSnapshot([], also=[os.getpid()])
    later = CpuSnapshot([], also=[os.getpid()])
    assert len(first.preempted) == 1
    assert later.preempted[0] >= first.preempted[0] >= 0
    assert later.preempted_per_s_since(first)[0] >= 0


def test_a_listening_process_is_found_by_its_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        assert local_services(f"127.0.0.1:{port}", "redis://example.com:6379/0") == {
            "broker": os.getpid()
        }
        assert local_services(f"kafka.example.com:{port}", f"redis://localhost:{port}/0") == {
            "redis_server": os.getpid()
        }
    assert listening_pid(port) is None  # closed


def test_the_broker_and_redis_server_are_told_apart_from_the_others() -> None:
    # worker, sender, reader, broker, redis-server
    start = snapshot(0.0, [0.0] * 5, 0.0)
    end = snapshot(10.0, [8.0, 2.0, 1.0, 2.5, 1.5], 16.0)
    cores = _cores([start, end], 1, 2, ["broker", "redis_server"])
    assert cores == {
        "workers": 0.8,
        "benchmark_process": 0.3,
        "broker": 0.25,
        "redis_server": 0.15,
        "machine": 1.6,
        "others": 0.1,
    }
    run = {"parts": {}, "wall_clock_moved_s": 0.0, "cores": cores}
    text = "\n".join(_latency_detail(run, None))
    assert "broker 0.25, redis-server 0.15, others (anything else) 0.10" in text
    del cores["redis_server"]
    text = "\n".join(_latency_detail(run, None))
    assert "broker 0.25, others (redis-server) 0.10" in text
