"""The due-time index of one partition: which customer's timer is due next.

Pure and in memory. It holds at most one entry per customer, the customer's next
timer (``timers.next_timer``); after applying anything to a customer, the owner
calls :meth:`TimerIndex.schedule` with the new next timer (or None). After a
restart or a partition move it is rebuilt from the customers table, whose
records are the truth; the index is only a cache of due times.

Structure, chosen for memory (about 150 bytes per pending customer, most of it
the customer key and the dict entry): a binary heap of Python ints, each packing
a due time (in 20 ms steps) and a slot number; per slot, arrays hold
the exact due time, the generation and the rule; a dict maps the customer key to
its live heap entry. Replacing a customer's timer never searches the heap:

- a later due time only updates the slot; the older, earlier heap entry stays,
  and when it comes up it is pushed again at the new time (lazy rescheduling);
- an earlier due time pushes a new entry; the old one is stale (no longer the
  customer's live entry) and is dropped when it comes up (lazy deletion);
- the heap is rebuilt from the live entries when stale ones outnumber them.

:meth:`pop_due` therefore looks only at entries whose heap time has come: work
per tick is proportional to what is due, never to the number of customers.
"""

from __future__ import annotations

import heapq
from array import array

from engine.journey.timers import Timer, TimerKind

RESOLUTION_MS = 20
"""Heap times are due times rounded down to this; the exact due time is kept per
slot and checked, so a timer never fires before it is due."""
_SLOT_BITS = 23
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_MAX_TICK = (1 << 37) - 1
"""Heap keys stay below 2**60, the largest int CPython stores in 32 bytes."""
_RELEASE = 0x8000
MAX_SLOTS = 1 << _SLOT_BITS
"""Customers with a pending timer one index can hold (8,388,608)."""


def _tick(due_ms: int) -> int:
    tick = due_ms // RESOLUTION_MS
    return 0 if tick < 0 else min(tick, _MAX_TICK)


class TimerIndex:
    """Pending timers of one partition, ordered by due time; keys are customer ids
    as the Kafka key bytes."""

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._live: dict[bytes, int] = {}
        self._keys: list[bytes | None] = []
        self._due = array("q")
        self._gen = array("q")
        self._rule = array("H")
        self._free: list[int] = []
        self._rules: list[str] = []
        self._rule_ids: dict[str, int] = {}
        self._stale = 0
        self.examined = 0
        """Heap entries looked at by pop_due so far (for tests and metrics)."""

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: bytes) -> bool:
        return key in self._live

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def _rule_id(self, timer: Timer) -> int:
        rid = self._rule_ids.get(timer.rule)
        if rid is None:
            rid = len(self._rules)
            if rid >= _RELEASE:
                raise OverflowError("more than 32768 distinct timer rules")
            self._rules.append(timer.rule)
            self._rule_ids[timer.rule] = rid
        return rid | _RELEASE if timer.kind is TimerKind.RELEASE else rid

    def schedule(self, key: bytes, timer: Timer | None) -> None:
        """Make ``timer`` the customer's one pending timer; None removes it."""
        live = self._live.get(key)
        if timer is None:
            if live is not None:
                self._release_slot(key, live & _SLOT_MASK)
                self._stale += 1
            return
        tick = _tick(timer.due_ms)
        if live is not None:
            slot = live & _SLOT_MASK
            self._set(slot, timer)
            if live >> _SLOT_BITS <= tick:
                return  # the live entry comes up first; pop_due moves it on
            self._stale += 1
        else:
            slot = self._new_slot(key)
            self._set(slot, timer)
        packed = tick << _SLOT_BITS | slot
        heapq.heappush(self._heap, packed)
        self._live[key] = packed
        if self._stale > len(self._live) + 4096:
            self._compact()

    def get(self, key: bytes) -> Timer | None:
        """The customer's pending timer, if any."""
        live = self._live.get(key)
        return None if live is None else self._timer(key, live & _SLOT_MASK)

    def next_due_ms(self) -> int | None:
        """The earliest due time to the resolution (rounded down), for a wall-clock
        ticker to know how long it may sleep."""
        heap = self._heap
        while heap:
            packed = heap[0]
            key = self._keys[packed & _SLOT_MASK]
            if key is not None and self._live.get(key) == packed:
                return (packed >> _SLOT_BITS) * RESOLUTION_MS
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def pop_due(self, now_ms: int, limit: int | None = None) -> list[tuple[bytes, Timer]]:
        """Remove and return the timers due at ``now_ms`` (at most ``limit``), in
        due order. A popped customer has no entry until scheduled again."""
        out: list[tuple[bytes, Timer]] = []
        heap, live, keys, dues = self._heap, self._live, self._keys, self._due
        last_tick = now_ms // RESOLUTION_MS
        waiting: list[int] = []  # live entries of the current time step, not yet due
        while heap and heap[0] >> _SLOT_BITS <= last_tick:
            if limit is not None and len(out) >= limit:
                break
            packed = heapq.heappop(heap)
            self.examined += 1
            slot = packed & _SLOT_MASK
            key = keys[slot]
            if key is None or live.get(key) != packed:
                self._stale -= 1
                continue
            due = dues[slot]
            if due > now_ms:
                again = _tick(due) << _SLOT_BITS | slot
                if again == packed:
                    waiting.append(packed)
                else:  # rescheduled later since it was pushed: move it on
                    heapq.heappush(heap, again)
                    live[key] = again
                continue
            out.append((key, self._timer(key, slot)))
            self._release_slot(key, slot)
        for packed in waiting:
            heapq.heappush(heap, packed)
        out.sort(key=lambda item: item[1].due_ms)
        return out

    # -- slots

    def _timer(self, key: bytes, slot: int) -> Timer:
        rid = self._rule[slot]
        kind = TimerKind.RELEASE if rid & _RELEASE else TimerKind.RULE
        return Timer(
            customer_id=key.decode("utf-8"),
            rule=self._rules[rid & ~_RELEASE],
            due_ms=self._due[slot],
            generation=self._gen[slot],
            kind=kind,
        )

    def _set(self, slot: int, timer: Timer) -> None:
        self._due[slot] = timer.due_ms
        self._gen[slot] = timer.generation
        self._rule[slot] = self._rule_id(timer)

    def _new_slot(self, key: bytes) -> int:
        if self._free:
            slot = self._free.pop()
            self._keys[slot] = key
            return slot
        slot = len(self._keys)
        if slot >= MAX_SLOTS:
            raise OverflowError(
                f"a timer index holds at most {MAX_SLOTS} customers; use more partitions"
            )
        self._keys.append(key)
        self._due.append(0)
        self._gen.append(0)
        self._rule.append(0)
        return slot

    def _release_slot(self, key: bytes, slot: int) -> None:
        del self._live[key]
        self._keys[slot] = None
        self._free.append(slot)

    def _compact(self) -> None:
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)
        self._stale = 0
