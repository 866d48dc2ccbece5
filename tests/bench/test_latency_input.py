"""The latency runs' input: live traffic or a backfill of the same journeys."""

from __future__ import annotations

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


def test_a_backfill_has_the_same_journeys_stamped_weeks_ago() -> None:
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
