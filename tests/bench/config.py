"""Benchmark sizes: the full run's defaults, scaled down for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

FULL_CUSTOMERS = 100_000
FULL_RECOVERY_CUSTOMERS = 1_000_000
FULL_TIMER_CUSTOMERS = 1_000_000


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of one benchmark run.

    ``customers``: simulated customers pre-loaded into the input topic (about ten
    events each). ``window_s``: the longest throughput window per contender after
    warm-up. ``latency_s``: how long the latency run publishes. ``recovery_customers``:
    the most customers written into the changelog; fewer when the run would not end
    within ``budget_s`` at ``assumed_recovery_eps`` changelog records per second per
    recovery (``budget_s`` <= 0: no limit); recovery time is then scaled linearly to
    ``recovery_target``. ``timer_customers``: customers with a pending timer on one
    worker for the timer memory (fewer when the budget is short: the memory is then
    scaled linearly to ``timer_target``); ``timer_lag_timers`` wall-clock timers
    are scheduled over ``timer_lag_s`` for the fire lag. ``latency_curve``: the shares
    of the engine's rate at which further live latency runs are made, each with a
    fresh worker (the run at half the rate is always made): where the p99 stands
    below half load.
    """

    out: Path
    customers: int = FULL_CUSTOMERS
    recovery_customers: int = FULL_RECOVERY_CUSTOMERS
    recovery_target: int = FULL_RECOVERY_CUSTOMERS
    partitions: int = 4
    budget_s: float = 540.0
    #: The bulk changelog read (engine/worker/recovery.py) did ~40,000 records/s on
    #: 2 cores (Faust's own loop ~7,000); with margin.
    assumed_recovery_eps: float = 25_000.0
    window_s: float = 20.0
    warmup_s: float = 2.0
    warmup_records: int = 1_000
    latency_s: float = 20.0
    #: Traffic before the latency samples start (new topic partitions' first writes).
    latency_warmup_s: float = 3.0
    latency_curve: tuple[float, ...] = (0.25, 0.375)
    commit_interval: float = 0.5
    seed: int = 7
    guarantee: str = "at_least_once"
    rocksdb: bool = True
    preload_processes: int = 2
    timer_customers: int = FULL_TIMER_CUSTOMERS
    timer_target: int = FULL_TIMER_CUSTOMERS
    timer_lag_timers: int = 2_000
    timer_lag_s: float = 10.0
    #: Rebuilding a timer index took 3-7 s per 100k customers on 2 shared cores, and
    #: writing customers with a pending timer (~900 B each) ~15,000 records/s.
    assumed_rebuild_s_per_customer: float = 5e-5
    assumed_timer_write_eps: float = 15_000.0

    def __post_init__(self) -> None:
        if any(not 0 < share < 1 for share in self.latency_curve):
            raise ValueError(f"latency_curve shares must be in (0, 1): {self.latency_curve}")

    @classmethod
    def scaled(cls, out: Path, scale: float, **overrides: Any) -> BenchConfig:
        """``scale`` 1.0 is the full run; 0.002 is the smoke test (about 2,000 events)."""
        if scale <= 0:
            raise ValueError("scale must be > 0")
        base = cls(
            out=out,
            customers=max(50, round(FULL_CUSTOMERS * scale)),
            recovery_customers=max(10_000, round(FULL_RECOVERY_CUSTOMERS * min(scale, 1.0))),
            window_s=min(20.0, max(3.0, 20.0 * scale)),
            warmup_s=min(2.0, max(0.5, 2.0 * scale)),
            warmup_records=min(1_000, max(100, round(1_000 * scale * 10))),
            latency_s=min(20.0, max(3.0, 20.0 * scale)),
            latency_warmup_s=min(3.0, max(1.0, 30.0 * scale)),
            latency_curve=(0.25, 0.375) if scale >= 0.05 else (0.25,),
            preload_processes=2 if scale >= 0.05 else 1,
            timer_customers=max(10_000, round(FULL_TIMER_CUSTOMERS * min(scale, 1.0))),
            timer_lag_timers=max(100, round(2_000 * min(scale * 10, 1.0))),
            timer_lag_s=min(10.0, max(3.0, 10.0 * scale)),
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}
