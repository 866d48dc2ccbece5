"""The ``naive_faust`` contender: a journey app written the way Faust's examples are.

Logic inside the ``async for``: two tables (last stage, event count), one write each
per event, and a send to an output topic every fifth event. Same broker settings as
the engine where they are not the app's logic (memory store, producer linger, the
partition count, the event loop, the commit interval from ``BROKER_COMMIT_INTERVAL``).

``python -m tests.bench.naive_faust`` with ``BENCH_*`` variables (see :func:`build`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import faust
import orjson


def build(env: Mapping[str, str]) -> faust.App:
    partitions = int(env["BENCH_PARTITIONS"])
    app = faust.App(
        env["BENCH_APP_ID"],
        broker=f"kafka://{env['BENCH_BOOTSTRAP']}",
        store="memory://",
        datadir=env["BENCH_DATA_DIR"],
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_enabled=False,
        producer_linger=0.005,
        autodiscover=False,
    )
    stages = app.Table("stages", default=str, partitions=partitions)
    counts = app.Table("counts", default=int, partitions=partitions)
    source = app.topic(
        env["BENCH_TOPIC"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    out = app.topic(env["BENCH_OUT_TOPIC"], key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="journey")
    async def journey(stream: faust.StreamT[bytes]) -> None:
        seen = 0
        async for event in stream.events():
            msg = orjson.loads(event.message.value)
            customer = msg.get("userId") or msg.get("anonymousId")
            stages[customer] = msg.get("event") or msg.get("type")
            counts[customer] += 1
            seen += 1
            if seen % 5 == 0:
                value = {"customer_id": customer, "stage": stages[customer]}
                await out.send(key=customer.encode(), value=orjson.dumps(value))

    return app


def main() -> int:
    if os.environ.get("BENCH_EVENT_LOOP") == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")
    app = build(os.environ)
    worker = faust.Worker(app, loglevel="info")
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
