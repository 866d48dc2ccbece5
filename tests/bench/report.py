"""``report.json`` (the numbers) and ``report.md`` (the numbers, the method, the notes)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from engine.local.kafka_config import INDEX_BYTES
from tests.bench.config import BenchConfig
from tests.bench.engine_runs import PACE_TICK_S, STEADY_SPAN
from tests.bench.latency_phases import PHASES

REQUIRED_KEYS = (
    "raw_eps",
    "naive_faust_eps",
    "engine_eps",
    "engine_vs_raw",
    "engine_vs_naive",
    "latency_p50_s",
    "latency_p99_s",
    "latency_backfill_p50_s",
    "latency_backfill_p99_s",
    "engine_2workers_eps",
    "recovery_1m_s",
    "rss_per_customer_bytes",
    "timer_lag_p50_s",
    "timer_lag_p99_s",
    "timer_rss_bytes",
)

METHOD = {
    "contenders": (
        "raw: aiokafka consumer (own group) + orjson parse + one produce per five events, "
        "committing after its sends are acknowledged. naive_faust: a Faust app, logic in "
        "the async for, two memory tables (one write each per event, so two changelog "
        "records per event), a send every fifth event, Faust defaults otherwise (its "
        "producer buffer included). engine: `python -m engine.cli worker` with "
        "engine.settings.Settings().to_env(), saas preset, {guarantee}, memory store, "
        "every switch on ({capabilities}); the full settings are in "
        "details.engine.settings."
    ),
    "input": (
        "engine.simulate.journeys + engine.simulate.encode for {customers:,} customers "
        "(Segment JSON keyed by customer, in event-time order), produced once into one "
        "topic of {partitions} partitions; every contender reads those bytes from offset 0 "
        "in its own consumer group."
    ),
    "throughput": (
        "Each contender runs in its own subprocess, all on the engine's event loop "
        "({event_loop}). Its consumer group's committed offsets "
        "are polled every 0.25 s (list_consumer_group_offsets). The window opens at the "
        "first observed commit past {warmup_records:,} records, at least {warmup_s:g} s "
        "after the group's first commit and after the process logged ready (start-up and "
        "rebalance excluded), and closes at the last observed commit once all input is "
        "committed or {window_s:g} s have passed; eps = records committed in the window / "
        "its length (a contender faster than the input, like raw, is measured until it has "
        "consumed all of it). All three commit every {commit_interval:g} s (Faust: "
        "BROKER_COMMIT_INTERVAL; raw: after its sends are acknowledged), so each end of "
        "the window is precise to about one commit interval. Resident memory (VmRSS) is "
        "read at the end of the window. The engine (and the 2-worker run) covers only the "
        "start of the input in its window (the first customers' early events); "
        "stage_changes_per_event says how busy that part was."
    ),
    "latency": (
        "A fresh engine worker on its own input topic is fed the touchpoints of a steady "
        "simulated customer population (journeys started over {steady_span_days} days, cut when"
        " the last one starts: new visitors, trials, renewals and cancellations side by side "
        "in steady proportions after the first few percent, which the warm-up holds; "
        "tests/bench/engine_runs.py latency_input) at half"
        " the engine's measured rate for {latency_warmup_s:g} s of warm-up and then "
        "{latency_s:g} s, sent every {pace_tick_ms:g} ms as one record batch per partition "
        "(the prepared input frozen out of the benchmark process's garbage collector, whose "
        "full passes over it would pause the sender). Two runs, each with its own worker: "
        "live (latency_p50_s, latency_p99_s): every event is stamped with the time it is "
        "published, so each customer's journey happens within the run and its timers are due "
        "days later, as with real-time traffic; backfill (latency_backfill_*): the same "
        "journeys stamped with their times over the previous months, so on the wall clock "
        "every timer they schedule is already due and the worker applies timers alongside the"
        " touchpoints. Each event's publish time is taken just before its batch is handed to "
        "the producer; journey.stage-changes is read by a process of its own "
        "(tests/bench/stage_reader.py, positioned on every partition before the first send; "
        "it only receives while the run lasts, so no work of the sender delays a receipt) and"
        " matched by cause.message_id; latency = received - published (time.monotonic, one "
        "clock for every process of the machine). Only events that cause a stage change give "
        "a sample, and only events published after the warm-up (a fresh app's first writes "
        "to its new topic partitions; the warm-up's worst latency is reported as "
        "warmup_max_s). The benchmark's broker keeps segment indexes at {index_kib} KiB "
        "(engine/local/kafka_config.py): at Kafka's 10 MiB default, faulting in the new "
        "partitions' sparse index files cost it about 1.4 CPU-seconds of page zeroing a few "
        "seconds into each run on this machine, and the p99 rose to 0.7-1 s. "
        "Percentiles are nearest-rank. parts: where the time goes, from the worker's "
        "wall-clock stamps (millisecond precision; the wall clock's offset to the monotonic "
        "one is taken before and after the run and their mean used, wall_clock_moved_s says "
        "how far time synchronisation moved it meanwhile): to_worker_s from publish to the "
        "worker starting to apply the event's partition batch (the stage change's "
        "processed_at: broker, fetch, waiting behind earlier batches), in_worker_s from there"
        " to the stage change's record timestamp (applying the batch and handing it to the "
        "producer), to_reader_s from there to its receipt (produce, broker, the reader's "
        "fetch); for each its p50, p99 and its mean over the slowest 1 % of the samples. "
        "cores: cores busy on average from the end of the warm-up to the last publish, from "
        "/proc: the worker, the benchmark's processes (sender and reader), the broker and "
        "redis-server when they run on this machine (found by their listening ports), the "
        "machine, and the others (anything else). worker_cpu_us_per_event: the "
        "worker's busy cores over events per second, on the throughput run's backlog and in "
        "each latency run. phases: the measured window cut into {phases} equal parts by "
        "publish time (tests/bench/latency_phases.py), each with the p50 and p99 of the "
        "events published in it, the cores busy and how often a second the worker's main "
        "thread was preempted (involuntary context switches)."
    ),
    "latency_curve": (
        "Live runs as above at {curve_shares} of the engine's measured rate, each with a "
        "fresh worker, made first and slowest first (the broker started for the benchmark "
        "JIT-compiles the request paths of the first such run: its compiler threads took "
        "0.4-0.7 cores for about 15 s, a cost a long-running broker has already paid); with "
        "the run at half the rate they give the p99 by rate "
        "(latency_curve). latency_p99_within_target_max_eps: the highest of those rates "
        "whose run, and every slower one, had a p99 of at most {target_ms:g} ms (null when "
        "the slowest did not)."
    ),
    "two_workers": (
        "Two `python -m engine.cli worker` processes, one app id, {partitions} partitions, "
        "the same input and window as the single engine; the window opens only after both "
        "logged ready. eps is the aggregate of both."
    ),
    "recovery": (
        "{recovery_customers:,} compact customer records (encode_state bytes of "
        "CustomerState end states from simulated journeys run through the saas trigger "
        "engine with the timers due by now fired, as a running worker leaves them, cloned "
        "under new customer ids) are produced straight into "
        "<app_id>-customers-changelog ({partitions} partitions, compacted). A worker is "
        "timed from process start to its log line '[^Worker]: Ready' (Faust logs it after "
        "table recovery); VmRSS is read {settle:g} s later. RSS per customer = (RSS after "
        "recovery - RSS of a worker with an empty table, same store) / customers. When "
        "fewer than {recovery_target:,} customers were written, the recovery part (ready "
        "minus an empty worker's ready) is scaled linearly and the empty start-up added "
        "once; the count is cut to fit the run's time budget ({budget_s:g} s, assuming "
        "{assumed_recovery_eps:,.0f} records/s per recovery)."
    ),
    "timers": (
        "Fire lag: a fresh worker (wall clock, trial_stalled shortened to "
        "{timer_lag_duration_s} s, quiet hours off) gets {timer_lag_timers:,} sign-ups "
        "spread over {timer_lag_s:g} s, each stamped with its publish time, so each "
        "schedules one timer due {timer_lag_duration_s} s later whose rule raises a "
        "trigger; a consumer of journey.trigger-decisions in the benchmark process takes, "
        "per decision caused by a timer, receive time minus the timer's due time "
        "(nearest-rank percentiles). Memory: {timer_customers_written:,} customer "
        "records that each have a pending timer (due days ahead, so none fires meanwhile; "
        "cloned from simulated customers) are written into a changelog; a worker recovers "
        "them and rebuilds its timer index from them (its log line gives the count and "
        "the time); VmRSS is read 1 s after that, minus the RSS of a worker with an empty "
        "table (memory store). timer_rss_bytes is that difference for "
        "{timer_target:,} pending timers (scaled linearly when fewer were written to fit "
        "the budget): the customers' records in the table included, as a worker holding "
        "that many timers holds them."
    ),
}


def build(results: dict[str, Any], cfg: BenchConfig, elapsed_s: float) -> dict[str, Any]:
    raw = round(results["raw"]["eps"], 1)
    naive = round(results["naive_faust"]["eps"], 1)
    engine = round(results["engine"]["eps"], 1)
    rec = results["recovery"]
    report: dict[str, Any] = {
        "raw_eps": raw,
        "naive_faust_eps": naive,
        "engine_eps": engine,
        "engine_vs_raw": engine / raw,
        "engine_vs_naive": engine / naive,
        "latency_p50_s": round(results["latency"]["p50_s"], 4),
        "latency_p99_s": round(results["latency"]["p99_s"], 4),
        "latency_backfill_p50_s": round(results["latency_backfill"]["p50_s"], 4),
        "latency_backfill_p99_s": round(results["latency_backfill"]["p99_s"], 4),
        "engine_2workers_eps": round(results["engine_2workers"]["eps"], 1),
        "engine_2workers_eps_per_process": round(results["engine_2workers"]["eps"] / 2, 1),
        "recovery_1m_s": round(rec["memory"]["recovery_target_s"], 2),
        "rss_per_customer_bytes": round(rec["memory"]["rss_per_customer_bytes"], 1),
        "timer_lag_p50_s": round(results["timers"]["lag"]["p50_s"], 4),
        "timer_lag_p99_s": round(results["timers"]["lag"]["p99_s"], 4),
        "timer_rss_bytes": round(results["timers"]["memory"]["timer_target_rss_bytes"]),
        "timer_rebuild_s_per_100k": results["timers"]["memory"]["rebuild_s_per_100k"],
    }
    if "rocksdb" in rec:
        report["recovery_1m_rocksdb_s"] = round(rec["rocksdb"]["recovery_target_s"], 2)
        report["rss_per_customer_bytes_rocksdb"] = round(
            rec["rocksdb"]["rss_per_customer_bytes"], 1
        )
    curve = latency_curve(results)
    report["latency_curve"] = curve
    report["latency_p99_within_target_max_eps"] = highest_rate_within(curve, LATENCY_TARGET_S)
    report["recovery_customers_measured"] = rec["memory"]["customers"]
    report["recovery_extrapolated"] = rec["memory"]["extrapolated"]
    report["worker_cpu_us_per_event"] = cpu_per_event(results)
    report["elapsed_s"] = round(elapsed_s, 1)
    report["config"] = cfg.as_dict()
    report["environment"] = environment()
    tmem = results["timers"]["memory"]
    fill = {
        **cfg.as_dict(),
        "settle": 1.0,
        "timer_lag_duration_s": results["timers"]["lag"]["duration_s"],
        "timer_customers_written": tmem["changelog"]["records"],
        "event_loop": results["event_loop"],
        "recovery_customers": rec["changelog"]["records"],
        "pace_tick_ms": PACE_TICK_S * 1000,
        "steady_span_days": STEADY_SPAN.days,
        "curve_shares": ", ".join(f"{share:g}" for share in sorted(cfg.latency_curve)) or "no",
        "target_ms": LATENCY_TARGET_S * 1000,
        "index_kib": INDEX_BYTES // 1024,
        "phases": PHASES,
        "capabilities": ", ".join(
            f"{k}={v}" for k, v in results["engine"]["settings"].items() if k.endswith("_ENABLED")
        )
        or "none",
    }
    report["method"] = {k: v.format(**fill) for k, v in METHOD.items()}
    report["details"] = results
    report["log_warnings"] = log_warnings(cfg.out / "logs")
    return report


def latency_curve(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The live latency runs, slowest rate first: those of the curve and the one at
    half the engine's rate."""
    runs = [*results.get("latency_curve", []), {"share": 0.5, **results["latency"]}]
    points = [
        {
            "share": run["share"],
            "rate_eps": round(run["achieved_rate_eps"], 1),
            "p50_s": round(run["p50_s"], 4),
            "p99_s": round(run["p99_s"], 4),
            "max_s": round(run["max_s"], 4),
            "worker_cores": run["cores"]["workers"],
            "machine_cores": run["cores"]["machine"],
        }
        for run in runs
    ]
    return sorted(points, key=lambda point: point["rate_eps"])


def highest_rate_within(points: list[dict[str, Any]], target_s: float) -> float | None:
    """The highest rate of ``points`` whose p99, and that of every slower point, is at
    most ``target_s``; None when the slowest point misses it."""
    best = None
    for point in sorted(points, key=lambda point: point["rate_eps"]):
        if point["p99_s"] > target_s:
            break
        best = point["rate_eps"]
    return best


def environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "faust-streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "rocksdict": _version_or_none("rocksdict"),
        "kafka_broker": "Apache Kafka (engine.local.LocalKafka, KRaft, single node)",
        "engine_commit": _git("rev-parse", "--short", "HEAD"),
        "engine_uncommitted_changes": bool(_git("status", "--porcelain", "--", "engine")),
    }


def _git(*args: str) -> str:
    """What git says about the work tree ('' when it is not a git checkout)."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _version_or_none(name: str) -> str | None:
    try:
        return version(name)
    except Exception:
        return None


_LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")
_NOISE = re.compile(r"\d+(\.\d+)?")


def log_warnings(logs: Path, limit: int = 12) -> dict[str, dict[str, int]]:
    """Warning and error lines per contender log, numbers blanked, most frequent first."""
    found: dict[str, dict[str, int]] = {}
    for path in sorted(logs.glob("*.log")):
        counts: Counter[str] = Counter()
        for line in path.read_text("utf-8", "replace").splitlines():
            match = _LEVEL.search(line)
            if match:
                counts[_NOISE.sub("#", line[match.start() :])[:200]] += 1
        if counts:
            found[path.stem] = dict(counts.most_common(limit))
    return found


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _cpu(run: dict[str, Any]) -> str:
    procs = " + ".join(f"{c:.2f}" for c in run["cpu_cores"]) or "n/a"
    return f"{procs} ({run['machine_busy_cores']:.2f})"


def summary_table(r: dict[str, Any]) -> str:
    d = r["details"]
    two = d["engine_2workers"]
    rows = [
        "| contender | events/s per process | engine / contender | cores used (machine) "
        "| RSS at end of window |",
        "|---|---:|---:|---:|---:|",
        f"| raw | {r['raw_eps']:,.0f} | {r['engine_vs_raw']:.4f} | {_cpu(d['raw'])} | "
        f"{_mb(d['raw']['rss_bytes'][0])} |",
        f"| naive_faust | {r['naive_faust_eps']:,.0f} | {r['engine_vs_naive']:.4f} | "
        f"{_cpu(d['naive_faust'])} | {_mb(d['naive_faust']['rss_bytes'][0])} |",
        f"| engine | {r['engine_eps']:,.0f} | 1 | {_cpu(d['engine'])} | "
        f"{_mb(d['engine']['rss_bytes'][0])} |",
        f"| engine, 2 workers | {r['engine_2workers_eps_per_process']:,.0f} "
        f"({r['engine_2workers_eps']:,.0f} together) | | {_cpu(two)} | "
        f"{' + '.join(_mb(b) for b in two['rss_bytes'])} |",
    ]
    return "\n".join(rows)


_PART_NAMES = {
    "to_worker_s": "publish to the worker applying it",
    "in_worker_s": "applying and handing to the producer",
    "to_reader_s": "produced to received",
}


def cpu_per_event(results: dict[str, Any]) -> dict[str, float | None]:
    """A worker's CPU microseconds per event: reading the pre-loaded input as a
    backlog (the throughput run) and fed at half that rate (the latency runs);
    None where the cores were not measured."""
    engine, live, back = results["engine"], results["latency"], results["latency_backfill"]
    runs = {  # name: (the worker's busy cores, events per second)
        "backlog": (engine["cpu_cores"][0] if engine["cpu_cores"] else None, engine["eps"]),
        "live": ((live["cores"] or {}).get("workers"), live["achieved_rate_eps"]),
        "backfill": ((back["cores"] or {}).get("workers"), back["achieved_rate_eps"]),
    }
    return {
        name: None if busy is None else round(busy / rate * 1e6, 1)
        for name, (busy, rate) in runs.items()
    }


#: The first milestone's latency target: p99 at most this at half load.
LATENCY_TARGET_S = 0.1

#: A move of the wall clock during a latency run that the report points out.
WALL_CLOCK_NOTED_S = 0.002


#: Processes a latency run's cores may name: (key in ``cores``, label).
_SERVICES = (("broker", "broker"), ("redis_server", "redis-server"))


def _latency_detail(run: dict[str, Any], us_per_event: float | None) -> list[str]:
    """Where one latency run's time went, and the cores busy meanwhile."""
    lines = [
        "| part | p50 | p99 | slowest 1 %, mean |",
        "|---|---:|---:|---:|",
        *(
            f"| {_PART_NAMES[name]} | {part['p50'] * 1000:,.1f} ms | "
            f"{part['p99'] * 1000:,.1f} ms | {part['slowest_1pct_mean'] * 1000:,.1f} ms |"
            for name, part in run["parts"].items()
        ),
        "",
    ]
    moved = run["wall_clock_moved_s"]
    if abs(moved) >= WALL_CLOCK_NOTED_S:
        lines += [
            f"The wall clock moved by {moved * 1000:+,.0f} ms during the run (time "
            "synchronisation): the parts, from the worker's wall-clock stamps, are off by "
            "up to that much; the latency itself is on the monotonic clock.",
            "",
        ]
    cores = run.get("cores")
    if cores:
        named = [(label, cores[key]) for key, label in _SERVICES if key in cores]
        rest = ", ".join(label for key, label in _SERVICES if key not in cores)
        lines += [
            f"Cores busy meanwhile: worker {cores['workers']:.2f}, benchmark (sender and reader) "
            f"{cores['benchmark_process']:.2f}, "
            + "".join(f"{label} {value:.2f}, " for label, value in named)
            + f"others ({rest or 'anything else'}) {cores['others']:.2f}; machine "
            f"{cores['machine']:.2f}. The worker's CPU per event: {_us(us_per_event)}.",
            "",
        ]
    return lines + _phase_lines(run.get("phases") or [])


def _phase_lines(phases: list[dict[str, Any]]) -> list[str]:
    """The run's phases: the tail and the load as the journeys go on."""
    if not phases:
        return []
    return [
        "| phase | p50 | p99 | worker cores | machine cores | worker preempted / s |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {i} of {len(phases)} | {_ms(p['p50_s'])} | {_ms(p['p99_s'])} | "
            f"{p['worker_cores']:.2f} | {p['machine_cores']:.2f} | "
            f"{p['worker_preempted_per_s']:,} |"
            for i, p in enumerate(phases, 1)
        ),
        "",
    ]


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:,.0f} ms"


def _curve_lines(r: dict[str, Any]) -> list[str]:
    """The p99 by rate of the live runs."""
    curve = r.get("latency_curve") or []
    if len(curve) < 2:
        return []
    engine = r["engine_eps"]
    lines = [
        "Live traffic by rate (a fresh worker for each; the run above included):",
        "",
        "| share of the engine's rate | events/s | p50 | p99 | max | worker cores | "
        "machine cores |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p['share']:g} | {p['rate_eps']:,.0f} | {p['p50_s'] * 1000:,.1f} ms | "
        f"{p['p99_s'] * 1000:,.1f} ms | {p['max_s'] * 1000:,.1f} ms | "
        f"{p['worker_cores']:.2f} | {p['machine_cores']:.2f} |"
        for p in curve
    ]
    best = r.get("latency_p99_within_target_max_eps")
    target = f"{LATENCY_TARGET_S * 1000:g} ms"
    if best is None:
        verdict = f"p99 above {target} at every rate measured."
    else:
        verdict = (
            f"p99 at most {target} up to **{best:,.0f} events/s** ({best / engine:.0%} of the "
            "engine's rate), of the rates measured."
        )
    return [*lines, "", verdict, ""]


def _us(value: float | None) -> str:
    return "not measured" if value is None else f"{value:,.0f} us"


def markdown(r: dict[str, Any]) -> str:
    d, cfg = r["details"], r["config"]
    lat, back = d["latency"], d["latency_backfill"]
    lines = [
        "# Benchmark: raw, naive Faust and the engine",
        "",
        f"Run of {r['elapsed_s']:.0f} s on {r['environment']['cpus']} cores of the engine at "
        f"commit {r['environment']['engine_commit'] or '?'}"
        f"{' with uncommitted changes' if r['environment']['engine_uncommitted_changes'] else ''}"
        ", one real Apache "
        f"Kafka broker; input: {d['input']['events']:,} events of {d['input']['customers']:,} "
        f"customers ({d['input']['bytes'] / 2**20:,.0f} MiB, {d['input']['partitions']} "
        "partitions).",
        "",
        "## Throughput",
        "",
        summary_table(r),
        "",
        "Cores used: the contender's own processes over the window (machine-wide busy "
        "cores in brackets, the broker and the benchmark's poller included; 2 cores in all).",
        "",
        f"Engine window: {d['engine']['records_in_window']:,} events in "
        f"{d['engine']['window_s']:.1f} s, {d['engine']['stage_changes_per_event']:.2f} stage "
        f"changes per event, {d['engine']['triggers']:,} triggers sent and "
        f"{d['engine']['trigger_decisions']:,} policy decisions during the run (triggers "
        f"on); measured by: {d['engine']['method']}. The worker's CPU per event: "
        f"{_us(r['worker_cpu_us_per_event']['backlog'])}.",
        "",
        "## Latency (event published to stage change readable)",
        "",
        f"Live traffic at {lat['achieved_rate_eps']:,.0f} events/s (half the engine's rate), "
        f"{lat['samples']:,} samples from {lat['events']:,} events: "
        f"**p50 {r['latency_p50_s'] * 1000:,.1f} ms, p99 {r['latency_p99_s'] * 1000:,.1f} ms** "
        f"(max {lat['max_s'] * 1000:,.1f} ms; in the {lat['warmup_s']:g} s of warm-up "
        f"before the samples, max {lat['warmup_max_s'] * 1000:,.1f} ms). After the last "
        "publish the worker needed "
        f"{lat['drain_s']:.1f} s to commit everything (about one commit interval, "
        f"{cfg['commit_interval']:g} s, when it kept up; more means a backlog built up and "
        "the latency includes queueing).",
        "",
        *_latency_detail(lat, r["worker_cpu_us_per_event"]["live"]),
        *_curve_lines(r),
        f"Backfill (journeys stamped months ago, so their wall-clock timers are all due) at "
        f"{back['achieved_rate_eps']:,.0f} events/s, {back['samples']:,} samples: "
        f"**p50 {r['latency_backfill_p50_s'] * 1000:,.1f} ms, p99 "
        f"{r['latency_backfill_p99_s'] * 1000:,.1f} ms** (max {back['max_s'] * 1000:,.1f} ms; "
        f"{back['drain_s']:.1f} s to commit everything after the last publish).",
        "",
        *_latency_detail(back, r["worker_cpu_us_per_event"]["backfill"]),
        "## Table recovery and memory",
        "",
        "| store | customers written | empty worker ready | ready after recovery | "
        f"recovery, {cfg['recovery_target']:,} customers | RSS per customer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for store, rec in ((k, d["recovery"][k]) for k in ("memory", "rocksdb") if k in d["recovery"]):
        scaled = " (extrapolated)" if rec["extrapolated"] else ""
        lines.append(
            f"| {store} | {rec['customers']:,} | {rec['ready_empty_s']:.1f} s | "
            f"{rec['ready_s']:.1f} s | {rec['recovery_target_s']:.1f} s{scaled} | "
            f"{rec['rss_per_customer_bytes']:,.0f} B |"
        )
    if "rocksdb" in d["recovery"]:
        rdb = d["recovery"]["rocksdb"]
        lines += [
            "",
            f"RocksDB keeps the table on disk ({rdb['disk_per_customer_bytes']:,.0f} B per "
            "customer after recovery); its RSS is mostly memtables and block cache.",
        ]
    lag, tmem = d["timers"]["lag"], d["timers"]["memory"]
    scaled = " (scaled)" if tmem["extrapolated"] else ""
    lines += [
        "",
        "## Timers",
        "",
        "Fire lag on the wall clock, due time to the trigger's policy decision readable, "
        f"{lag['timers']:,} timers: **p50 {r['timer_lag_p50_s'] * 1000:,.0f} ms, p99 "
        f"{r['timer_lag_p99_s'] * 1000:,.0f} ms** (max {lag['max_s'] * 1000:,.0f} ms).",
        "",
        f"One worker with {tmem['pending_timers']:,} pending timers ({tmem['customers']:,} "
        f"customers): RSS {_mb(tmem['rss_bytes'])}, {_mb(tmem['rss_over_empty_bytes'])} over "
        f"an empty worker ({tmem['rss_per_pending_timer_bytes']:,.0f} B per customer with a "
        f"timer, record included); for {tmem['timer_target']:,} timers: "
        f"**{_mb(r['timer_rss_bytes'])}**{scaled}. The index was rebuilt from the table in "
        f"{tmem['rebuild_s']:.1f} s alongside the worker's other work, "
        f"{tmem['rebuild_busy_s']:.1f} s of it its own ({tmem['rebuild_s_per_100k']:.2f} s per "
        "100k customers).",
    ]
    lines += ["", "## Method", ""]
    lines += [f"- **{k}**: {v}" for k, v in r["method"].items()]
    lines += ["", "## Phases (s)", ""]
    lines += [f"- {k}: {v}" for k, v in d["phase_seconds"].items()]
    if r["log_warnings"]:
        lines += ["", "## Warnings and errors in the contenders' logs", ""]
        for name, counts in r["log_warnings"].items():
            lines.append(f"- `{name}`:")
            lines += [f"  - {n}x `{text}`" for text, n in counts.items()]
    lines += ["", "## report.json", "", "```json"]
    lines.append(
        orjson.dumps({k: r[k] for k in REQUIRED_KEYS}, option=orjson.OPT_INDENT_2).decode()
    )
    lines += ["```", ""]
    return "\n".join(lines)
