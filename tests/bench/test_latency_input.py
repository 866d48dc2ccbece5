"""The latency runs' input: live traffic or a backfill of the same journeys, of a
steady customer population."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from tests.bench.engine_runs import latency_input


def _times(records: list[tuple[bytes, bytes, str]]) -> list[datetime]:
    return [datetime.fromisoformat(orjson.loads(v)["timestamp"]) for _, v, _ in records]


def test_live_events_are_stamped_as_they_will_be_published() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    live = latency_input(500, 7, now, live_rate=100.0)
    times = _times(live)
    assert times == [now + timedelta(seconds=n / 100.0) for n in range(len(live))]


def test_a_backfill_has_the_same_journeys_stamped_months_ago() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    back = latency_input(500, 7, now)
    live = latency_input(500, 7, now, live_rate=100.0)
    times = _times(back)
    assert times == sorted(times)
    assert max(times) <= now
    assert max(times) - min(times) > timedelta(days=14)

    def shape(records: list[tuple[bytes, bytes, str]]) -> list[tuple[bytes, object, object]]:
        out = []
        for key, value, _ in records:
            body = orjson.loads(value)
            out.append((key, body.get("type"), body.get("event")))
        return out

    assert shape(back) == shape(live)


def test_the_input_has_the_events_asked_for() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    for events in (1, 37, 2_000):
        assert len(latency_input(events, 7, now, live_rate=100.0)) == events


#: Events of a journey's later part: renewals, cancellations, survey answers and
#: payment failures (each fires triggers in the saas preset).
_LATE = {"Subscription Renewed", "Subscription Cancelled", "NPS Submitted", "Payment Failed"}


def test_the_mix_of_journey_stages_is_steady_through_the_input() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    records = latency_input(60_000, 7, now, live_rate=1000.0)
    names = [orjson.loads(v).get("event") or orjson.loads(v)["type"] for _, v, _ in records]
    tenth = len(names) // 10
    shares = []
    for n in range(1, 10):  # the first tenth is the population building up
        part = Counter(names[n * tenth : (n + 1) * tenth])
        shares.append(
            (
                sum(part[name] for name in _LATE) / tenth,
                part["Signed Up"] / tenth,
            )
        )
    late, signups = zip(*shares, strict=True)
    assert min(late) > 0.04
    assert min(signups) > 0.04
    # No part of the input is a burst of either end of the journeys.
    assert max(late) < 1.3 * min(late)
    assert max(signups) < 1.3 * min(signups)
