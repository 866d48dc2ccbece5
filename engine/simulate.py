"""A traffic simulator: realistic Segment-format journeys published to Kafka.

Each customer follows an archetype (anonymous browser, stalled trial, direct
buyer, buyer who settles in, churner, advocate, come-back customer). Journeys are
laid out in event time over the past weeks and merged in time order, then
published at a steady rate, keyed by customer.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from engine.messages import iso

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

ARCHETYPES: dict[str, float] = {
    "browser": 0.22,
    "stalled_trial": 0.18,
    "direct_buyer": 0.08,
    "settled": 0.22,
    "churner": 0.12,
    "advocate": 0.10,
    "comeback": 0.08,
}

PAGES = ["/", "/pricing", "/features", "/blog/lifecycle", "/customers", "/docs"]
FEATURES = ["reports", "dashboards", "exports", "alerts", "segments"]


@dataclass(slots=True)
class Journey:
    """One customer's events, produced lazily in event-time order."""

    rng: random.Random
    customer: str
    archetype: str
    start: datetime
    steps: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    def _at(self, after: timedelta) -> datetime:
        return self.start + after

    def build(self) -> list[tuple[datetime, dict[str, Any]]]:
        r, t = self.rng, timedelta(0)
        anon = f"anon-{self.customer}"
        user = f"user-{self.customer}"
        out: list[tuple[datetime, dict[str, Any]]] = []

        def add(gap: timedelta, msg: dict[str, Any]) -> None:
            nonlocal t
            t += gap
            out.append((self._at(t), msg))

        def page(ident: dict[str, str]) -> dict[str, Any]:
            return {"type": "page", "name": r.choice(PAGES), **ident, "channel": "browser"}

        def track(event: str, ident: dict[str, str], **props: Any) -> dict[str, Any]:
            return {"type": "track", "event": event, **ident, "properties": props}

        def active_days(ident: dict[str, str], days: int) -> None:
            for _ in range(days):
                add(DAY * r.uniform(0.8, 1.6), track("Signed In", ident))
                add(
                    HOUR * r.uniform(0.1, 2),
                    track("Feature Used", ident, feature=r.choice(FEATURES)),
                )

        a = self.archetype
        anon_id = {"anonymousId": anon}
        user_id = {"userId": user, "anonymousId": anon}
        if a != "direct_buyer":
            for _ in range(r.randint(1, 4)):
                add(HOUR * r.uniform(0.05, 30), page(anon_id))
            if r.random() < 0.5:
                add(HOUR * r.uniform(0.1, 5), track("Product Viewed", anon_id, plan="team"))
        if a == "browser":
            return out
        if a == "direct_buyer":
            add(HOUR, page(user_id))
            add(HOUR * r.uniform(0.1, 1), track("Order Completed", user_id, revenue=49.0))
        else:
            add(
                HOUR * r.uniform(1, 48),
                {"type": "identify", **user_id, "traits": {"plan": "trial"}},
            )
            add(timedelta(minutes=1), track("Signed Up", user_id))
            add(timedelta(minutes=2), track("Trial Started", user_id, trial_days=14))
            if a == "stalled_trial":
                add(DAY * r.uniform(0.5, 2), track("Feature Used", user_id, feature="reports"))
                return out
            add(DAY * r.uniform(1, 10), track("Subscription Started", user_id, plan="team"))
        active_days(user_id, r.randint(1, 5))
        if r.random() < 0.3:
            add(HOUR * r.uniform(1, 20), track("Onboarding Completed", user_id))
        if a == "churner":
            add(DAY * r.uniform(5, 20), track("Payment Failed", user_id, attempt=1))
            add(DAY * r.uniform(1, 7), track("Subscription Cancelled", user_id, reason="price"))
            return out
        if a == "comeback":
            add(DAY * r.uniform(3, 10), track("NPS Submitted", user_id, score=r.randint(0, 6)))
            add(DAY * r.uniform(2, 6), track("Subscription Cancelled", user_id))
            add(DAY * r.uniform(5, 15), track("Trial Started", user_id))
            add(DAY * r.uniform(1, 5), track("Subscription Started", user_id))
            active_days(user_id, 1)
            return out
        if r.random() < 0.6:
            add(DAY * r.uniform(10, 30), track("Subscription Renewed", user_id, period="month"))
        if a == "advocate":
            add(DAY * r.uniform(1, 10), track("NPS Submitted", user_id, score=r.randint(9, 10)))
            add(DAY * r.uniform(0.5, 3), track("Referral Sent", user_id))
        elif r.random() < 0.3:
            add(DAY * r.uniform(1, 10), track("NPS Submitted", user_id, score=r.randint(7, 8)))
        return out


#: The latest a simulated journey starts: this long before ``now``.
LAST_START_BEFORE_NOW = timedelta(days=20)


def journeys(
    customers: int, seed: int, now: datetime, span: timedelta = timedelta(days=40)
) -> Iterator[tuple[datetime, str, dict[str, Any]]]:
    """All customers' events merged in event-time order, none later than ``now``.

    The journeys start at random over ``span``, the last :data:`LAST_START_BEFORE_NOW`
    before ``now``."""
    rng = random.Random(seed)
    names, weights = zip(*ARCHETYPES.items(), strict=True)
    run = uuid.UUID(int=rng.getrandbits(128)).hex[:6]
    heap: list[tuple[datetime, int, int, list[tuple[datetime, dict[str, Any]]]]] = []
    for n in range(customers):
        archetype = rng.choices(names, weights)[0]
        start = now - span - LAST_START_BEFORE_NOW + span * rng.random()
        steps = Journey(random.Random(rng.getrandbits(64)), f"{run}-{n}", archetype, start).build()
        steps = [s for s in steps if s[0] <= now]
        if steps:
            heapq.heappush(heap, (steps[0][0], n, 0, steps))
    while heap:
        at, n, i, steps = heapq.heappop(heap)
        yield at, _customer_key(steps[i][1]), steps[i][1]
        if i + 1 < len(steps):
            heapq.heappush(heap, (steps[i + 1][0], n, i + 1, steps))


def _customer_key(msg: dict[str, Any]) -> str:
    return str(msg.get("userId") or msg["anonymousId"])


def encode(at: datetime, msg: dict[str, Any], rng: random.Random) -> bytes:
    body = dict(msg)
    body["messageId"] = str(uuid.UUID(int=rng.getrandbits(128)))
    body["timestamp"] = iso(at)
    body.setdefault("context", {"library": {"name": "journey-simulator", "version": "1"}})
    return orjson.dumps(body)


BAD_SAMPLES = [
    b"not json at all",
    b'{"type": "track", "event": "Signed Up", "timestamp": "2026-01-01T00:00:00Z"}',
    b'{"type": "teleport", "userId": "x", "timestamp": "2026-01-01T00:00:00Z"}',
    b'{"type": "track", "event": "Signed Up", "userId": "x", "timestamp": "yesterday"}',
    b"[1, 2, 3]",
]


@dataclass(slots=True)
class SimStats:
    sent: int = 0
    bad: int = 0
    duplicates: int = 0


async def publish(
    bootstrap: str,
    topic: str,
    *,
    customers: int,
    rate: float,
    seed: int = 7,
    duration: float | None = None,
    bad_ratio: float = 0.0,
    duplicate_ratio: float = 0.0,
    stats: SimStats | None = None,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SimStats:
    """Publish the simulated journeys at ``rate`` events/s (0: as fast as possible)."""
    from aiokafka import AIOKafkaProducer

    stats = stats or SimStats()
    rng = random.Random(seed + 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending: list[asyncio.Future[Any]] = []
    try:
        for at, customer, msg in journeys(customers, seed, now or datetime.now(UTC)):
            key = customer.encode()
            value = encode(at, msg, rng)
            pending.append(await producer.send(topic, value, key=key))
            stats.sent += 1
            if duplicate_ratio and rng.random() < duplicate_ratio:
                pending.append(await producer.send(topic, value, key=key))
                stats.duplicates += 1
            if bad_ratio and rng.random() < bad_ratio:
                pending.append(await producer.send(topic, rng.choice(BAD_SAMPLES), key=key))
                stats.bad += 1
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
            elapsed = loop.time() - started
            if duration is not None and elapsed >= duration:
                break
            if should_stop is not None and should_stop():
                break
            if rate > 0:
                ahead = stats.sent / rate - elapsed
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return stats
