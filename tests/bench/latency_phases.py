"""A latency run cut into equal phases by publish time: the tail, and the cores, as the
run goes on.

The live input's mix of journey stages is steady after its first few percent (which
the warm-up holds), so the phases show whether the tail follows the machine (other
work, the worker's growing state) rather than a change of traffic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from tests.bench.procs import CpuSnapshot

#: Phases a latency run is cut into.
PHASES = 3


def phase_starts(measured_from: float, seconds: float, phases: int = PHASES) -> list[float]:
    """When each phase begins (``time.monotonic()``), the measured window cut evenly."""
    return [measured_from + seconds * k / phases for k in range(phases)]


def by_phase(
    samples: Sequence[tuple[float, float]],
    snapshots: Sequence[CpuSnapshot],
    workers: int,
    percentile: Callable[[list[float], float], float],
) -> list[dict[str, Any]]:
    """One entry per phase between two consecutive ``snapshots`` (taken at each phase's
    start and after the last publish). ``samples``: ``(published, latency)`` of the
    measured window; a sample belongs to the phase its event was published in.
    ``percentile(values, q)``: the run's nearest-rank percentile. The first ``workers``
    processes of each snapshot are the workers."""
    out: list[dict[str, Any]] = []
    for start, end in itertools.pairwise(snapshots):
        latencies = [lat for sent, lat in samples if start.at <= sent < end.at]
        per_proc, machine = end.cores_since(start)
        preempted = end.preempted_per_s_since(start)
        out.append(
            {
                "samples": len(latencies),
                "p50_s": percentile(latencies, 0.50) if latencies else None,
                "p99_s": percentile(latencies, 0.99) if latencies else None,
                "worker_cores": round(sum(per_proc[:workers]), 3),
                "machine_cores": round(machine, 3),
                "worker_preempted_per_s": round(sum(preempted[:workers])),
            }
        )
    return out
