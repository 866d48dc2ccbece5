"""The benchmark's phases, in order, on one broker and one pre-loaded input topic.

1. pre-load the simulated journeys of ``customers`` customers into the input topic;
2. ``raw``, ``naive_faust`` and ``engine`` each consume all of it in their own
   consumer group and subprocess (throughput, resident memory);
3. latency: the engine on its own topic, fed live traffic (events stamped as they
   are published) at lower shares of its measured rate (the latency curve), then at
   half of it, then a backfill at half of it (the same journeys stamped with their
   times months ago, so every wall-clock timer is due at once);
4. two engine workers on 2 cores, one consumer group, aggregate throughput;
5. recovery: customers written into a changelog, workers timed to ready, memory
   store and RocksDB, each against a worker with an empty table;
6. timers: fire lag of wall-clock timers, and the memory of one worker holding
   many customers with a pending timer (tests/bench/timer_phase.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from engine.admin import create_topics
from engine.catalog import Catalog
from engine.journey import TriggerType
from engine.settings import Settings
from tests.bench import recovery, report, timer_phase
from tests.bench.config import BenchConfig
from tests.bench.engine_runs import (
    EngineSetup,
    engine_proc,
    engine_progress,
    engine_settings,
    measure_latency,
)
from tests.bench.kafka_util import GroupProgress, Progress, create_topic, total_records
from tests.bench.procs import RAW_READY, Proc, _pythonpath, local_services

log = logging.getLogger("tests.bench")


def run_bench(
    cfg: BenchConfig, bootstrap: str, redis_url: str, began: float | None = None
) -> dict[str, Any]:
    """Run every phase against the given servers; write and return the report.

    ``began``: when the run started (``time.monotonic()``), for the time budget.
    """
    began = time.monotonic() if began is None else began
    results = asyncio.run(Bench(cfg, bootstrap, redis_url, began).run())
    built = report.build(results, cfg, time.monotonic() - began)
    report.write(built, cfg.out)
    return built


def run_timers_only(
    cfg: BenchConfig, bootstrap: str, redis_url: str, began: float | None = None
) -> dict[str, Any]:
    """Only the timer phase (``--only timers``); writes ``timers.json``."""
    bench = Bench(cfg, bootstrap, redis_url, began)

    async def run() -> dict[str, Any]:
        bench.logs.mkdir(parents=True, exist_ok=True)
        try:
            return dict(await bench._phase("timers", bench.timers(None)))
        finally:
            shutil.rmtree(bench.work, ignore_errors=True)

    results = asyncio.run(run())
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "timers.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return results


class Bench:
    def __init__(
        self, cfg: BenchConfig, bootstrap: str, redis_url: str, began: float | None = None
    ) -> None:
        self.cfg = cfg
        self.began = time.monotonic() if began is None else began
        self.bootstrap = bootstrap
        self.ns = f"bench-{uuid.uuid4().hex[:6]}"
        self.logs = cfg.out / "logs"
        self.work = Path(tempfile.mkdtemp(prefix="journey-bench-"))
        self.setup = EngineSetup(
            bootstrap=bootstrap,
            redis_url=redis_url,
            partitions=cfg.partitions,
            data_root=self.work,
            log_root=self.logs,
            commit_interval=cfg.commit_interval,
            guarantee=cfg.guarantee,
        )
        self.input_topic = f"{self.ns}.touchpoints"
        #: The engine's event loop; the raw loop and the naive app run on the same one.
        self.event_loop = str(getattr(Settings(), "event_loop", "asyncio"))
        self.total = 0
        self.phases: dict[str, float] = {}
        #: The broker and redis-server processes, when they run on this machine.
        self.services = local_services(bootstrap, redis_url)

    async def run(self) -> dict[str, Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            results: dict[str, Any] = {"namespace": self.ns, "event_loop": self.event_loop}
            results["input"] = await self._phase("preload", self.preload())
            results["raw"] = await self._phase("raw", self.raw())
            results["naive_faust"] = await self._phase("naive_faust", self.naive_faust())
            results["engine"] = await self._phase("engine", self.engine())
            rate = results["engine"]["eps"] / 2
            # Slowest rate first: the broker started for the benchmark compiles the
            # latency runs' request paths in its first run of them (its JIT compiler
            # took 0.4-0.7 cores for about 15 s), a cost a long-running broker has
            # paid; the lower rates pay it before the run at half the rate.
            results["latency_curve"] = await self._phase(
                "latency_curve", self.latency_curve(results["engine"]["eps"])
            )
            results["latency"] = await self._phase("latency", self.latency(rate, live=True))
            results["latency_backfill"] = await self._phase(
                "latency_backfill", self.latency(rate, live=False)
            )
            results["engine_2workers"] = await self._phase("engine_2workers", self.two_workers())
            results["recovery"] = await self._phase("recovery", self.recovery())
            empty_rss = results["recovery"]["memory"]["rss_empty_bytes"]
            results["timers"] = await self._phase("timers", self.timers(empty_rss))
            results["phase_seconds"] = self.phases
            return results
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    async def _phase(self, name: str, work: Any) -> Any:
        log.info("phase %s ...", name)
        began = time.monotonic()
        result = await work
        self.phases[name] = round(time.monotonic() - began, 2)
        log.info("phase %s done in %.1fs: %s", name, self.phases[name], _brief(result))
        return result

    # ------------------------------------------------------------------ phases

    async def preload(self) -> dict[str, Any]:
        cfg = self.cfg
        await create_topic(self.bootstrap, self.input_topic, cfg.partitions)
        now_ms = str(int(datetime.now(UTC).timestamp() * 1000))
        parts = max(1, min(cfg.preload_processes, cfg.customers))
        shares = [
            cfg.customers // parts + (1 if i < cfg.customers % parts else 0) for i in range(parts)
        ]
        env = {"PYTHONPATH": _pythonpath()}
        children = [
            await asyncio.create_subprocess_exec(
                *_python(),
                "-m",
                "tests.bench.preload",
                self.bootstrap,
                self.input_topic,
                str(share),
                str(cfg.seed + 1000 * i),
                now_ms,
                stdout=asyncio.subprocess.PIPE,
                env=_env(env),
            )
            for i, share in enumerate(shares)
        ]
        outputs = [await child.communicate() for child in children]
        for child in children:
            if child.returncode != 0:
                raise RuntimeError(f"pre-load exited with {child.returncode}")
        stats = [orjson.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        self.total = await total_records(self.bootstrap, self.input_topic)
        events = sum(s["events"] for s in stats)
        if self.total != events:
            raise RuntimeError(f"pre-loaded {events} events but the topic holds {self.total}")
        return {
            "topic": self.input_topic,
            "partitions": cfg.partitions,
            "customers": cfg.customers,
            "events": events,
            "bytes": sum(s["bytes"] for s in stats),
            "generator_processes": parts,
        }

    async def raw(self) -> dict[str, Any]:
        group = f"{self.ns}-raw"
        out = f"{self.ns}.raw-out"
        await create_topic(self.bootstrap, out, self.cfg.partitions)
        argv = ["-m", "tests.bench.raw_loop", self.bootstrap, self.input_topic, group, out]
        argv += [str(self.cfg.commit_interval), self.event_loop]
        proc = Proc("raw", argv, {}, self.logs / "raw.log", ready_line=RAW_READY)
        return await self._throughput([proc], self._group(group))

    async def naive_faust(self) -> dict[str, Any]:
        app_id = f"{self.ns}-naive"
        await create_topic(self.bootstrap, f"{self.ns}.naive-out", self.cfg.partitions)
        env = {
            "BENCH_APP_ID": app_id,
            "BENCH_BOOTSTRAP": self.bootstrap,
            "BENCH_TOPIC": self.input_topic,
            "BENCH_OUT_TOPIC": f"{self.ns}.naive-out",
            "BENCH_PARTITIONS": str(self.cfg.partitions),
            "BENCH_DATA_DIR": str(self.work / app_id),
            "BROKER_COMMIT_INTERVAL": str(self.cfg.commit_interval),
            "BENCH_EVENT_LOOP": self.event_loop,
        }
        proc = Proc("naive_faust", ["-m", "tests.bench.naive_faust"], env, self.logs / "naive.log")
        return await self._throughput([proc], self._group(app_id))

    async def engine(self) -> dict[str, Any]:
        settings = engine_settings(self.setup, f"{self.ns}-engine", self.input_topic)
        result = await self._throughput(
            [engine_proc(self.setup, settings, "engine")], engine_progress([settings])
        )
        catalog = Catalog(settings)
        changes = await total_records(self.bootstrap, catalog.name(Catalog.STAGE_CHANGES))
        result["stage_changes"] = changes
        result["stage_changes_per_event"] = changes / max(result["committed_at_stop"], 1)
        # Triggers are on (the saas preset's rules): what they wrote meanwhile.
        result["triggers"] = sum(
            [await total_records(self.bootstrap, catalog.trigger_topic(k)) for k in TriggerType]
        )
        result["trigger_decisions"] = await total_records(
            self.bootstrap, catalog.name(Catalog.DECISIONS)
        )
        result["settings"] = {
            k: v for k, v in settings.to_env().items() if k not in ("JOURNEY_REDIS_URL",)
        }
        return result

    async def latency(self, rate: float, *, live: bool, name: str = "") -> dict[str, Any]:
        app_id = f"{self.ns}-{name or ('latency' if live else 'latency-backfill')}"
        settings = engine_settings(self.setup, app_id, f"{app_id}.touchpoints")
        await create_topics(settings)
        proc = engine_proc(self.setup, settings, f"engine-{app_id[len(self.ns) + 1 :]}").start()
        try:
            await asyncio.to_thread(proc.wait_ready)
            return await measure_latency(
                settings,
                [proc],
                rate,
                self.cfg.latency_s,
                self.cfg.seed + 100,
                warmup_s=self.cfg.latency_warmup_s,
                live=live,
                services=self.services,
            )
        finally:
            proc.stop()

    async def latency_curve(self, engine_eps: float) -> list[dict[str, Any]]:
        """Live latency runs at the configured shares of the engine's rate, each with
        a fresh worker, lowest rate first."""
        runs = []
        for share in sorted(self.cfg.latency_curve):
            name = f"latency-at-{share * 100:g}pct".replace(".", "_")
            run = await self.latency(engine_eps * share, live=True, name=name)
            runs.append({"share": share, **run})
        return runs

    async def two_workers(self) -> dict[str, Any]:
        app_id = f"{self.ns}-two"
        nodes = [
            (engine_settings(self.setup, app_id, self.input_topic, node=f"-{node}"), node)
            for node in ("a", "b")
        ]
        procs = [engine_proc(self.setup, s, f"engine-2workers-{node}") for s, node in nodes]
        return await self._throughput(procs, engine_progress([s for s, _ in nodes]))

    def recovery_size(self) -> int:
        """The most customers whose recovery still ends the run within the budget."""
        cfg = self.cfg
        runs = 2 if cfg.rocksdb else 1
        if cfg.budget_s <= 0:
            return cfg.recovery_customers
        left = cfg.budget_s - (time.monotonic() - self.began) - 20.0 - runs * 12.0
        left -= self.timer_phase_s(min(cfg.timer_customers, 250_000))  # kept for the timers
        per_customer = runs / cfg.assumed_recovery_eps + 1 / 20_000  # recoveries + writing
        fits = int(left / per_customer) // 10_000 * 10_000
        return max(min(cfg.recovery_customers, fits), min(cfg.recovery_customers, 10_000))

    def timer_phase_s(self, customers: int) -> float:
        """What the timer phase takes (about), with ``customers`` for the memory."""
        cfg = self.cfg
        lag = cfg.timer_lag_s + timer_phase.LAG_DURATION_S + 25.0
        return lag + 15.0 + customers * self._timer_customer_s()

    def _timer_customer_s(self) -> float:
        cfg = self.cfg
        return (
            1 / cfg.assumed_timer_write_eps
            + 1 / cfg.assumed_recovery_eps
            + cfg.assumed_rebuild_s_per_customer
        )

    def timer_size(self, lag_done: bool) -> int:
        """The most timer customers that still end the run within the budget."""
        cfg = self.cfg
        if cfg.budget_s <= 0:
            return cfg.timer_customers
        left = cfg.budget_s - (time.monotonic() - self.began) - 20.0
        left -= 15.0 if lag_done else self.timer_phase_s(0)
        fits = int(left / self._timer_customer_s()) // 10_000 * 10_000
        return max(min(cfg.timer_customers, fits), min(cfg.timer_customers, 10_000))

    async def timers(self, empty_rss: int | None) -> dict[str, Any]:
        """Fire lag on the wall clock; memory of one worker with pending timers."""
        cfg, setup = self.cfg, self.setup
        lag = await timer_phase.measure_lag(
            setup, f"{self.ns}-lag", cfg.timer_lag_timers, cfg.timer_lag_s, "engine-timer-lag"
        )
        customers = self.timer_size(lag_done=True)
        templates = await asyncio.to_thread(
            timer_phase.pending_templates, cfg.seed + 300, datetime.now(UTC)
        )
        app_id = f"{self.ns}-tmem"
        settings = engine_settings(setup, app_id, f"{app_id}.touchpoints")
        written = await timer_phase.write_pending(settings, customers, templates, self.ns)
        if empty_rss is None:
            empty_id = f"{self.ns}-tempty"
            empty = engine_settings(setup, empty_id, f"{empty_id}.touchpoints")
            base = await asyncio.to_thread(recovery.start_to_ready, setup, empty, "timer-empty")
            empty_rss = int(base["rss_bytes"])
        got = await asyncio.to_thread(timer_phase.rebuilt_rss, setup, settings, "timer-memory")
        extra = got["rss_bytes"] - empty_rss
        scale = cfg.timer_target / max(got["pending_timers"], 1)
        return {
            "lag": lag,
            "memory": {
                **got,
                "changelog": written,
                "template_states": len(templates),
                "rss_empty_bytes": empty_rss,
                "rss_over_empty_bytes": extra,
                "rss_per_pending_timer_bytes": extra / max(got["pending_timers"], 1),
                "timer_target": cfg.timer_target,
                "timer_target_rss_bytes": extra * scale,
                "extrapolated": got["pending_timers"] != cfg.timer_target,
            },
        }

    async def recovery(self) -> dict[str, Any]:
        cfg, setup = self.cfg, self.setup
        customers = self.recovery_size()
        templates = await asyncio.to_thread(recovery.template_states, 600, cfg.seed + 200)
        app_id = f"{self.ns}-rec"
        mem = engine_settings(setup, app_id, f"{app_id}.touchpoints")
        written = await recovery.write_changelog(mem, customers, templates, self.ns)
        out: dict[str, Any] = {"changelog": written, "template_states": len(templates)}
        stores = [("memory", "memory://")] + ([("rocksdb", "rocksdb://")] if cfg.rocksdb else [])
        for name, store in stores:
            empty_id = f"{self.ns}-empty-{name}"
            empty = engine_settings(setup, empty_id, f"{empty_id}.touchpoints", store=store)
            base = await asyncio.to_thread(recovery.start_to_ready, setup, empty, f"empty-{name}")
            full = engine_settings(setup, app_id, f"{app_id}.touchpoints", store=store, node=name)
            got = await asyncio.to_thread(recovery.start_to_ready, setup, full, f"recovery-{name}")
            result = recovery.per_customer(base, got, customers, cfg.recovery_target)
            if name == "rocksdb":
                disk = recovery.dir_bytes(full.data_path)
                result["disk_bytes"] = disk
                result["disk_per_customer_bytes"] = disk / customers
            out[name] = result
        return out

    # ------------------------------------------------------------------ helpers

    def _group(self, group: str) -> GroupProgress:
        return GroupProgress(self.bootstrap, group, self.input_topic)

    async def _throughput(self, procs: list[Proc], progress: Progress) -> dict[str, Any]:
        for proc in procs:
            proc.start()
        try:
            async with progress:
                measured = await progress.measure(
                    self.total,
                    procs,
                    warmup_records=self.cfg.warmup_records,
                    warmup_s=self.cfg.warmup_s,
                    window_s=self.cfg.window_s,
                )
            rss = [proc.rss_bytes() for proc in procs]
            startup = [proc.startup_s for proc in procs]
        finally:
            codes = [proc.stop() for proc in procs]
        return {
            **measured.summary(),
            "processes": len(procs),
            "eps_per_process": measured.eps / len(procs),
            "rss_bytes": rss,
            "startup_s": startup,
            "exit_codes": codes,
            "logs": [str(proc.log_path) for proc in procs],
        }


def _python() -> list[str]:
    return [sys.executable]


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}


def _brief(result: Any) -> str:
    if isinstance(result, dict):
        keys = ("eps", "events", "p50_s", "p99_s")
        shown = {k: result[k] for k in keys if k in result}
        return str(shown or sorted(result))
    return str(result)
