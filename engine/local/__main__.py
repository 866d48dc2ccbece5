"""``python -m engine.local kafka|redis|both``: run local infrastructure in the foreground.

Prints ``KAFKA_BOOTSTRAP=host:port`` and/or ``REDIS_URL=redis://...`` on stdout once the
servers are ready (optionally also to ``--env-file``), then waits for SIGINT/SIGTERM
and stops them cleanly. Logs go to stderr. Exits non-zero if a server dies early.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from engine.local.kafka import LocalKafka
from engine.local.redis import LocalRedis

log = logging.getLogger("engine.local")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m engine.local",
        description="Start a real local Kafka broker and/or redis-server until interrupted.",
    )
    parser.add_argument("what", choices=("kafka", "redis", "both"), help="what to start")
    parser.add_argument(
        "--timeout", type=float, default=90.0, help="start-up timeout per server (s)"
    )
    parser.add_argument("--kafka-log", type=Path, default=None, help="broker log file")
    parser.add_argument("--kafka-data", type=Path, default=None, help="keep Kafka data here")
    parser.add_argument("--redis-log", type=Path, default=None, help="redis-server log file")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="also write the KEY=value lines here (handy when running in the background)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        if stop.is_set():
            return
        stop.set()
        # Also interrupt a start-up that is still in progress.
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    servers: list[LocalKafka | LocalRedis] = []
    code = 0
    try:
        lines: list[str] = []
        if args.what in ("kafka", "both"):
            kafka = LocalKafka(data_dir=args.kafka_data, log_path=args.kafka_log)
            servers.append(kafka)
            kafka.start(timeout=args.timeout)
            lines.append(f"KAFKA_BOOTSTRAP={kafka.bootstrap}")
        if args.what in ("redis", "both"):
            redis = LocalRedis(log_path=args.redis_log)
            servers.append(redis)
            redis.start(timeout=args.timeout)
            lines.append(f"REDIS_URL={redis.url}")
        text = "".join(f"{line}\n" for line in lines)
        if args.env_file is not None:
            tmp = args.env_file.with_name(args.env_file.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(args.env_file)
        sys.stdout.write(text)
        sys.stdout.flush()
        log.info("ready; press Ctrl-C (or send SIGTERM) to stop")
        while not stop.wait(1.0):
            dead = [s for s in servers if not s.running]
            if dead:
                log.error("%r exited unexpectedly; shutting down", dead[0])
                code = 1
                break
    except KeyboardInterrupt:
        pass
    except RuntimeError:
        log.exception("start-up failed")
        code = 1
    finally:
        # Finish the clean-up even if another signal arrives.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for server in reversed(servers):
            server.stop()
        if args.env_file is not None:
            with contextlib.suppress(OSError):
                args.env_file.unlink()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
