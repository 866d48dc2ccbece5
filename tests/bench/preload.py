"""Pre-load simulated Segment journeys into the input topic, once, for every contender.

``python -m tests.bench.preload BOOTSTRAP TOPIC CUSTOMERS SEED NOW_MS`` generates the
journeys of CUSTOMERS customers with :func:`engine.simulate.journeys`, encodes them
with :func:`engine.simulate.encode` (keyed by customer, in event-time order) and
produces them; it prints ``{"events": N, "bytes": B}``. The runner starts one per
core, each with its own seed (so its own customer ids), to halve the wall time.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from engine.simulate import encode, journeys
from tests.bench.kafka_util import produce_fast


def encoded(customers: int, seed: int, now: datetime) -> Iterator[tuple[bytes, bytes]]:
    rng = random.Random(seed + 1)
    for at, customer, msg in journeys(customers, seed, now):
        yield customer.encode("utf-8"), encode(at, msg, rng)


def main(argv: list[str]) -> int:
    bootstrap, topic, customers, seed, now_ms = argv
    now = datetime.fromtimestamp(int(now_ms) / 1000, tz=UTC)
    count, size = asyncio.run(
        produce_fast(bootstrap, topic, encoded(int(customers), int(seed), now))
    )
    sys.stdout.write(orjson.dumps({"events": count, "bytes": size}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
