"""``python -m tests.bench [--out bench/out] [--scale 1.0]``: run the benchmark.

Starts a real local Apache Kafka broker and redis-server (``engine.local``) unless
``--bootstrap`` is given, runs every phase, writes ``report.json`` and ``report.md``
into ``--out`` and prints the summary. Nothing is left running.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.local import LocalKafka, LocalRedis
from tests.bench import report
from tests.bench.config import BenchConfig
from tests.bench.runner import run_bench, run_timers_only


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("bench/out"))
    p.add_argument("--scale", type=float, default=1.0, help="1.0: 100k customers, 1M recovery")
    p.add_argument("--customers", type=int, default=None, help="input customers")
    p.add_argument("--recovery-customers", type=int, default=None)
    p.add_argument("--window", type=float, default=None, help="throughput window cap (s)")
    p.add_argument("--latency-seconds", type=float, default=None)
    p.add_argument("--commit-interval", type=float, default=None, help="seconds, all contenders")
    p.add_argument("--guarantee", choices=["at_least_once"], default=None)
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole run (540); fewer recovery customers when needed, 0: no limit",
    )
    p.add_argument("--no-rocksdb", action="store_true", help="skip the RocksDB recovery")
    p.add_argument("--timer-customers", type=int, default=None, help="pending timers on one worker")
    p.add_argument(
        "--only", choices=["timers"], default=None, help="run one phase only (timers.json)"
    )
    p.add_argument("--bootstrap", default=None, help="use this broker instead of a local one")
    p.add_argument("--redis-url", default=None, help="use this Redis instead of a local one")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig.scaled(
        args.out,
        args.scale,
        customers=args.customers,
        recovery_customers=args.recovery_customers,
        window_s=args.window,
        latency_s=args.latency_seconds,
        commit_interval=args.commit_interval,
        guarantee=args.guarantee,
        budget_s=args.budget,
        rocksdb=False if args.no_rocksdb else None,
        timer_customers=args.timer_customers,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = config_from(args)
    began = time.monotonic()
    kafka = LocalKafka(log_path=cfg.out / "broker.log") if not args.bootstrap else None
    redis = LocalRedis() if not args.redis_url else None
    try:
        if kafka is not None:
            kafka.start()
        if redis is not None:
            redis.start()
        if args.only == "timers":
            timers = run_timers_only(
                cfg,
                args.bootstrap or (kafka.bootstrap if kafka else ""),
                args.redis_url or (redis.url if redis else ""),
                began,
            )
            lag, memory = timers["lag"], timers["memory"]
            print(f"timer_lag_p50_s {lag['p50_s']:.4f}  timer_lag_p99_s {lag['p99_s']:.4f}")
            print(
                f"{memory['pending_timers']} pending timers: RSS {memory['rss_bytes']} B, "
                f"{memory['rss_over_empty_bytes']} B over an empty worker; rebuild "
                f"{memory['rebuild_s']:.1f} s ({memory['rebuild_s_per_100k']:.2f} s per 100k)"
            )
            print(f"\n{cfg.out / 'timers.json'}")
            return 0
        built = run_bench(
            cfg,
            args.bootstrap or (kafka.bootstrap if kafka else ""),
            args.redis_url or (redis.url if redis else ""),
            began,
        )
    finally:
        if redis is not None:
            redis.stop()
        if kafka is not None:
            kafka.stop()
    print()
    print(report.summary_table(built))
    print()
    for key in (*report.REQUIRED_KEYS, "recovery_1m_rocksdb_s", "rss_per_customer_bytes_rocksdb"):
        if key in built:
            print(f"{key:32} {built[key]}")
    print(f"\nreport: {cfg.out / 'report.json'}, {cfg.out / 'report.md'}")
    print(f"total: {time.monotonic() - began:.0f} s (broker start included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
