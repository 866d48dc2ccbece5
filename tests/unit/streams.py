"""Random event streams for equivalence tests: late events, redeliveries, clock jumps.

:func:`stream` gives (event, processing clock) pairs for three customers of a model:
every call type, every event name the model knows and some it does not, property
values of every kind, events up to three days late, recent events delivered again
(some exactly one dedupe window later), and a processing clock that mostly follows
event time but sometimes jumps days ahead or hours back.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.journey import Event, EventType
from engine.journey.model import LifecycleModel

T0 = datetime(2024, 6, 3, tzinfo=UTC)
CHANNELS = ["browser", "mobile", "server", "email"]


def event_names(model: LifecycleModel) -> list[str]:
    names = set(model.activity_events)
    for rule in model.rules:
        names |= rule.events
    return [*sorted(names), "Unknown Thing", "Signed  In"]


def _properties(rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if rng.random() < 0.7:
        props["score"] = rng.choice(
            [rng.randint(0, 10), str(rng.randint(0, 10)), 8.5, None, True, "high", [9]]
        )
    if rng.random() < 0.5:
        props["plan"] = rng.choice(["free", "team", "Free", 0])
    return props


def stream(model: LifecycleModel, seed: int, count: int) -> list[tuple[Event, datetime]]:
    """``count`` (event, now) pairs for three customers."""
    rng = random.Random(seed)
    names = event_names(model)
    t = T0 + timedelta(seconds=rng.randint(0, 10**6), microseconds=rng.randint(0, 10**6))
    now = t
    out: list[tuple[Event, datetime]] = []
    for n in range(count):
        if out and rng.random() < 0.12:  # a recent event delivered again
            again, then = rng.choice(out[-8:])
            if rng.random() < 0.5:  # exactly at the end of a dedupe window
                now = then + rng.choice([timedelta(hours=24), timedelta(hours=2), timedelta(0)])
            out.append((replace(again, channel=rng.choice(CHANNELS)), now))
            continue
        t += timedelta(minutes=rng.expovariate(1 / 240))
        at = t - timedelta(hours=rng.uniform(0, 72)) if rng.random() < 0.1 else t
        roll = rng.random()
        if roll < 0.05:
            now += timedelta(days=rng.uniform(1, 3))  # the dedupe window passes
        elif roll < 0.08:
            now -= timedelta(hours=rng.uniform(0, 30))  # the processing clock goes back
        else:
            now = max(now, t) + timedelta(milliseconds=rng.randint(0, 5000))
        mid = f"m-{seed}-{n}"
        etype = rng.choice(list(EventType)) if rng.random() < 0.3 else EventType.TRACK
        if etype is EventType.TRACK:
            name: str | None = rng.choice(names)
        elif etype in (EventType.PAGE, EventType.SCREEN):
            name = rng.choice([None, "/pricing", *names[:3]])
        else:
            name = None
        event = Event(
            message_id=mid,
            customer_id=f"c{rng.randint(1, 3)}",
            type=etype,
            timestamp=at,
            name=name,
            channel=rng.choice(CHANNELS),
            properties=_properties(rng),
        )
        out.append((event, now))
    return out
