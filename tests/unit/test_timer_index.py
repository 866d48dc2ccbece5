"""The per-partition due-time index: order, replacement, lazy deletion, work per tick."""

from __future__ import annotations

import random

from engine.journey import Timer, TimerIndex, TimerKind
from engine.journey.timer_index import RESOLUTION_MS

BASE = 1_717_372_800_000  # 2024-06-03T00:00Z


def t(customer: str, due: int, rule: str = "inactive", generation: int = 7) -> Timer:
    return Timer(customer, rule, BASE + due, generation)


def key(customer: str) -> bytes:
    return customer.encode()


def popped(index: TimerIndex, now: int, limit: int | None = None) -> list[tuple[str, int]]:
    return [(k.decode(), tm.due_ms - BASE) for k, tm in index.pop_due(BASE + now, limit)]


def test_pop_due_returns_due_timers_in_order_and_removes_them() -> None:
    index = TimerIndex()
    for name, due in [("a", 3000), ("b", 1000), ("c", 2000), ("d", 9000)]:
        index.schedule(key(name), t(name, due))
    assert len(index) == 4
    assert popped(index, 500) == []
    assert popped(index, 2000) == [("b", 1000), ("c", 2000)]
    assert popped(index, 2000) == []
    assert len(index) == 2
    assert "b" not in [k.decode() for k, _ in index.pop_due(BASE + 3000)]
    assert index.get(key("d")) == t("d", 9000)
    assert index.get(key("a")) is None


def test_a_popped_timer_is_the_scheduled_one() -> None:
    index = TimerIndex()
    timer = Timer("ü-1", "trial_stalled", BASE + 123_457, 99, TimerKind.RULE)
    release = Timer("c2", "promoter", BASE + 5, 0, TimerKind.RELEASE)
    index.schedule(key("ü-1"), timer)
    index.schedule(key("c2"), release)
    assert index.pop_due(BASE + 200_000) == [(key("c2"), release), (key("ü-1"), timer)]


def test_a_timer_never_fires_before_its_exact_due_time() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 1001))  # inside a 20 ms heap bucket
    assert popped(index, 1000) == []
    assert popped(index, 1001) == [("a", 1001)]


def test_rescheduling_later_keeps_one_live_entry_and_fires_at_the_new_time() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 1000, generation=1))
    index.schedule(key("a"), t("a", 5000, generation=2))  # newer activity: later
    assert len(index) == 1
    assert index.get(key("a")) == t("a", 5000, generation=2)
    assert popped(index, 4000) == []  # the old heap entry came up and moved on
    assert len(index) == 1
    assert popped(index, 5000) == [("a", 5000)]


def test_rescheduling_earlier_fires_at_the_earlier_time_only_once() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 5000))
    index.schedule(key("a"), t("a", 1000, rule="trial_stalled"))
    assert popped(index, 6000) == [("a", 1000)]
    assert popped(index, 7000) == []
    assert len(index) == 0


def test_none_unschedules_and_the_stale_entry_is_dropped() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 1000))
    index.schedule(key("b"), t("b", 1000))
    index.schedule(key("a"), None)
    index.schedule(key("zz"), None)  # nothing to remove: fine
    assert key("a") not in index
    assert popped(index, 2000) == [("b", 1000)]


def test_a_freed_slot_reused_by_another_customer_does_not_fire_the_old_one() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 1000))
    index.schedule(key("a"), None)  # a's heap entry is stale now
    index.schedule(key("b"), t("b", 3000))  # reuses a's slot
    assert popped(index, 2000) == []
    assert popped(index, 3000) == [("b", 3000)]


def test_pop_due_work_is_proportional_to_what_is_due() -> None:
    index = TimerIndex()
    rng = random.Random(4)
    for i in range(50_000):
        index.schedule(key(f"far{i}"), t(f"far{i}", 10**9 + rng.randrange(10**9)))
    for i in range(10):
        index.schedule(key(f"due{i}"), t(f"due{i}", 1000 + i))
    before = index.examined
    assert len(popped(index, 2000)) == 10
    assert index.examined - before == 10
    assert popped(index, 3000) == []
    assert index.examined - before == 10


def test_limit_leaves_the_rest_for_the_next_tick() -> None:
    index = TimerIndex()
    for i in range(5):
        index.schedule(key(f"c{i}"), t(f"c{i}", 100 * i))
    assert len(popped(index, 1000, limit=2)) == 2
    assert [c for c, _ in popped(index, 1000)] == ["c2", "c3", "c4"]


def test_many_reschedules_compact_the_heap() -> None:
    index = TimerIndex()
    for round_ in range(6):
        for i in range(2000):
            # Earlier each round: every schedule pushes and leaves a stale entry.
            index.schedule(key(f"c{i}"), t(f"c{i}", 10**7 - round_ * 10_000 - i))
    assert len(index) == 2000
    assert len(index._heap) <= 2 * 2000 + 4096 + 1
    due = popped(index, 10**8)
    assert len(due) == 2000
    assert len({c for c, _ in due}) == 2000


def test_next_due_is_an_upper_bound_within_the_resolution() -> None:
    index = TimerIndex()
    assert index.next_due_ms() is None
    index.schedule(key("a"), t("a", 1005))
    index.schedule(key("b"), t("b", 900))
    index.schedule(key("b"), None)
    nxt = index.next_due_ms()
    assert nxt is not None
    assert BASE + 1005 - RESOLUTION_MS < nxt <= BASE + 1005


def test_random_operations_agree_with_a_plain_dict() -> None:
    """Against a model: the index pops exactly the customers whose latest timer is due."""
    rng = random.Random(11)
    index = TimerIndex()
    model: dict[str, int] = {}
    now = 0
    for _ in range(20_000):
        c = f"c{rng.randrange(300)}"
        roll = rng.random()
        if roll < 0.6:
            due = now + rng.randrange(-50, 5000)
            index.schedule(key(c), t(c, due))
            model[c] = due
        elif roll < 0.7:
            index.schedule(key(c), None)
            model.pop(c, None)
        else:
            now += rng.randrange(0, 400)
            got = popped(index, now)
            want = sorted((due, c) for c, due in model.items() if due <= now)
            assert sorted((d, c) for c, d in got) == want
            assert [d for _, d in got] == sorted(d for _, d in got)
            for _, c2 in want:
                del model[c2]
        assert len(index) == len(model)


def test_clear_forgets_everything() -> None:
    index = TimerIndex()
    index.schedule(key("a"), t("a", 1))
    index.clear()
    assert len(index) == 0
    assert popped(index, 10) == []


def test_due_times_outside_the_heap_range_still_fire_correctly() -> None:
    index = TimerIndex()
    index.schedule(key("past"), Timer("past", "r", -(10**12), 0))  # before 1970
    index.schedule(key("far"), Timer("far", "r", 10**15, 0))  # year 33658
    assert [k for k, _ in index.pop_due(0)] == [b"past"]
    assert index.pop_due(10**15 - 1) == []
    assert len(index) == 1
    assert [k for k, _ in index.pop_due(10**15)] == [b"far"]
