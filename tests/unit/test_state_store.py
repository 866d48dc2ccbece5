"""The bytes-in-table state store and its LRU of decoded records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.journey import CustomerState, Event, EventType, StageMachine, load_preset
from engine.worker.state_store import StateStore, UnreadableState, decode_state, encode_state

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MACHINE = StageMachine(load_preset("saas"))


def state(customer: str) -> CustomerState:
    event = Event("m-" + customer, customer, EventType.TRACK, AT, name="Order Completed")
    new, _ = MACHINE.apply(None, event, AT)
    return new


class CountingTable(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)


def test_put_writes_bytes_that_decode_to_the_same_state() -> None:
    table = CountingTable()
    store = StateStore(table, cache_size=10)
    store.put(b"a", state("a"))
    assert isinstance(table[b"a"], bytes)
    assert decode_state(table[b"a"]) == state("a")
    assert store.get(b"a") == state("a")
    assert table.reads == 0  # served from the cache


def test_records_written_elsewhere_are_decoded_once() -> None:
    table = CountingTable()
    table[b"b"] = encode_state(state("b"))  # as after recovery from the changelog
    store = StateStore(table, cache_size=10)
    assert store.get(b"b") == state("b")
    assert store.get(b"b") == state("b")
    assert table.reads == 1
    assert store.get(b"nobody") is None


def test_cache_keeps_the_most_recently_used() -> None:
    table = CountingTable()
    store = StateStore(table, cache_size=2)
    for name in (b"a", b"b"):
        store.put(name, state(name.decode()))
    store.get(b"a")  # a is now the most recent
    store.put(b"c", state("c"))  # evicts b
    assert len(store) == 2
    reads = table.reads
    store.get(b"a")
    store.get(b"c")
    assert table.reads == reads
    assert store.get(b"b") == state("b")
    assert table.reads == reads + 1


def test_forget_all_rereads_the_table() -> None:
    table = CountingTable()
    store = StateStore(table, cache_size=10)
    store.put(b"a", state("a"))
    table[b"a"] = encode_state(state("z"))  # changed by another worker meanwhile
    store.forget_all()
    assert store.get(b"a") == state("z")


@pytest.mark.parametrize("raw", [b"not json", b'{"v": 7}', b"[1]"])
def test_unreadable_records_raise(raw: bytes) -> None:
    store = StateStore({b"x": raw}, cache_size=10)
    with pytest.raises(UnreadableState, match="cannot be read"):
        store.get(b"x")


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        StateStore({}, cache_size=0)
