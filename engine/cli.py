"""The ``journey`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from engine.journey import ModelError, preset_names, resolve_model
from engine.settings import Settings, SettingsError


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from engine.admin import create_topics
    from engine.worker import gc_policy
    from engine.worker.app import JourneyApp

    asyncio.run(create_topics(settings))
    if settings.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    journey = JourneyApp(settings)
    logging.getLogger(__name__).info("starting worker with %r", settings)
    worker = faust.Worker(journey.app, loglevel=settings.log_level, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG at warning level and
    # spins on every record: costly, and useless in a service's log.
    worker.spinner = None
    gc_policy.install(settings.gc_unfreeze_every, settings.gc_young_threshold)
    worker.execute_from_commandline()
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from engine.admin import create_topics
    from engine.catalog import Catalog

    if args.action == "list":
        for spec in Catalog(settings).all():
            print(f"{spec.name:40} {spec.partitions:3}  {spec.direction:8} {spec.description}")
        return 0
    outcome = asyncio.run(create_topics(settings, replication_factor=args.replication_factor))
    for name, what in sorted(outcome.items()):
        print(f"{what:8} {name}")
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from engine.catalog import Catalog
    from engine.simulate import publish

    topic = Catalog(settings).name(Catalog.TOUCHPOINTS)
    stats = asyncio.run(
        publish(
            settings.kafka_bootstrap,
            topic,
            customers=args.customers,
            rate=args.rate,
            seed=args.seed,
            duration=args.duration,
            bad_ratio=args.bad_ratio,
            duplicate_ratio=args.duplicate_ratio,
        )
    )
    print(
        f"published {stats.sent} events to {topic} "
        f"(+{stats.duplicates} duplicates, +{stats.bad} bad records)"
    )
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from engine.demo import run_demo

    code: int = run_demo(settings, args)
    return code


def _models(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in preset_names():
            model = resolve_model(name)
            print(f"{model.key:14} {', '.join(model.stages)}")
        return 0
    model = resolve_model(args.model)
    if args.action == "validate":
        print(f"ok: {model.key}, {len(model.stages)} stages, {len(model.rules)} rules")
        return 0
    print(
        json.dumps(
            {
                "model": model.key,
                "path": list(model.path),
                "stages": {s.name: s.description for s in model.stages.values()},
                "rules": [
                    {
                        "name": r.name,
                        "from": sorted(s or "(new)" for s in r.sources),
                        "to": r.to,
                        "description": r.description,
                    }
                    for r in model.rules
                ],
            },
            indent=2,
        )
    )
    return 0


def _funnel(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.catalog import Catalog
    from engine.funnel_source import SourceError, funnel_from_document, funnel_from_topic
    from engine.funnel_view import render_html, render_text

    models = [resolve_model(name) for name in preset_names()]
    own = resolve_model(settings.model)
    models = [m for m in models if m.name != own.name] + [own]
    try:
        if args.source:
            funnel = funnel_from_document(args.source, args.timeout)
            where = args.source
        else:
            topic = args.topic or Catalog(settings).name(Catalog.STAGE_CHANGES)
            funnel, read = asyncio.run(
                funnel_from_topic(
                    settings.kafka_bootstrap, topic, models, idle_timeout_s=args.timeout
                )
            )
            where = f"{topic} on {settings.kafka_bootstrap} ({read.records:,} records)"
            if read.skipped:
                print(
                    f"journey: left out {read.skipped} records that are not stage changes; "
                    f"first: {read.first_skip}",
                    file=sys.stderr,
                )
    except SourceError as exc:
        print(f"journey: {exc}", file=sys.stderr)
        return 1
    doc = funnel.to_dict()
    if args.model:
        unknown = sorted(set(args.model) - set(doc["models"]))
        if unknown:
            print(f"journey: no stage changes of model {', '.join(unknown)}", file=sys.stderr)
    print(f"funnel from {where}\n")
    print(render_text(doc, args.model))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.html:
        Path(args.html).write_text(render_html(doc, where, args.model), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def _redis(settings: Settings, args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from engine.changelog import ChangelogError, customers_changelog
    from engine.profile_rebuild import rebuild_profiles
    from engine.redis_client import describe
    from engine.settings import mask
    from engine.worker.state_store import UnreadableState

    topic = args.topic or customers_changelog(settings)
    try:
        report, stats = asyncio.run(
            rebuild_profiles(settings, topic, remove_stale=args.remove_stale, timeout=args.timeout)
        )
    except (ChangelogError, UnreadableState) as exc:
        print(f"journey: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"journey: Redis at {mask(settings.redis_url)}: {describe(exc)}", file=sys.stderr)
        return 1
    print(
        f"read {stats.records:,} records of {topic} ({stats.keys:,} customers); "
        f"wrote {report.written:,} profiles to {mask(settings.redis_url)} under "
        f"{settings.redis_prefix!r}, kept {report.kept_newer:,} newer ones, "
        f"removed {report.removed:,}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="journey", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a Faust worker (settings from JOURNEY_* variables)")

    topics = sub.add_parser("topics", help="create or list the catalog's topics")
    topics.add_argument("action", choices=["create", "list"])
    topics.add_argument("--replication-factor", type=int, default=1)

    sim = sub.add_parser("simulate", help="publish simulated customer journeys")
    sim.add_argument("--customers", type=int, default=1000)
    sim.add_argument("--rate", type=float, default=200.0, help="events/s; 0 = unthrottled")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--bad-ratio", type=float, default=0.0)
    sim.add_argument("--duplicate-ratio", type=float, default=0.0)

    demo = sub.add_parser("demo", help="local broker + Redis + worker + simulator, live summary")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds; 0 = until Ctrl-C")
    demo.add_argument("--customers", type=int, default=3000)
    demo.add_argument("--rate", type=float, default=400.0)
    demo.add_argument("--seed", type=int, default=7)

    models = sub.add_parser("models", help="list, show or validate lifecycle models")
    models.add_argument("action", choices=["list", "show", "validate"])
    models.add_argument("model", nargs="?", default="saas", help="preset name or model file")

    funnel = sub.add_parser(
        "funnel",
        help="the lifecycle funnel: from the stage-changes topic (beginning to end) or a "
        "funnel JSON (file, URL or -)",
    )
    funnel.add_argument(
        "--from", dest="source", metavar="FILE|URL|-", help="read a funnel JSON instead of Kafka"
    )
    funnel.add_argument("--topic", help="stage-changes topic (default: the catalog's)")
    funnel.add_argument("--model", action="append", help="show only this model (repeatable)")
    funnel.add_argument("--html", metavar="PATH", help="also write an HTML page with the chart")
    funnel.add_argument("--json", metavar="PATH", help="also write the funnel JSON")
    funnel.add_argument(
        "--timeout", type=float, default=30.0, help="seconds without progress before giving up"
    )

    redis = sub.add_parser("redis", help="the Redis profile store")
    redis.add_argument("action", choices=["rebuild"])
    redis.add_argument(
        "--topic", help="customers changelog (default: <JOURNEY_APP_ID>-customers-changelog)"
    )
    redis.add_argument(
        "--remove-stale",
        action="store_true",
        help="also delete profiles under the prefix of customers not in the changelog "
        "(stop the workers first: a customer new since the read began would lose its profile)",
    )
    redis.add_argument(
        "--timeout", type=float, default=30.0, help="seconds without progress before giving up"
    )
    return parser


COMMANDS = {
    "worker": _worker,
    "topics": _topics,
    "simulate": _simulate,
    "demo": _demo,
    "models": _models,
    "funnel": _funnel,
    "redis": _redis,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        return COMMANDS[args.command](settings, args)
    except (SettingsError, ModelError) as exc:
        print(f"journey: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
