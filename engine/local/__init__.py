"""Real local infrastructure for tests, the demo and the benchmark.

* :class:`LocalKafka` - a single-node Apache Kafka broker (KRaft) on a free loopback port.
* :class:`LocalRedis` - a ``redis-server`` on a free loopback port.
* :func:`free_port` - a free TCP port on 127.0.0.1.

Both servers are real processes (no mocks), started on demand and stopped by
``stop()``, by leaving their ``with`` block, or at interpreter exit. Command line:
``python -m engine.local kafka|redis|both``. Standard library only.
"""

from __future__ import annotations

from engine.local.kafka import LocalKafka
from engine.local.ports import free_port
from engine.local.redis import LocalRedis

__all__ = ["LocalKafka", "LocalRedis", "free_port"]
