"""Customer records in the Faust table as compact bytes, with decoded ones cached.

The table keeps each customer's record as the bytes written to its changelog
(orjson of ``CustomerState.to_dict()``): recovery copies bytes without decoding
them, and a million customers take a few hundred bytes each. The records the
worker is using are kept decoded in a bounded LRU, so a busy customer is decoded
once, not on every event. The cache is emptied whenever partitions move, because
another worker may have changed those customers meanwhile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import MutableMapping

import orjson

from engine.journey import CustomerState, StateError


class UnreadableState(RuntimeError):
    """A stored customer record cannot be decoded: the changelog is corrupt."""


def encode_state(state: CustomerState) -> bytes:
    """``orjson`` of ``state.to_dict()``, built without copying maps and tuples."""
    return orjson.dumps(state.to_record())


def decode_state(raw: bytes) -> CustomerState:
    try:
        return CustomerState.from_dict(orjson.loads(raw))
    except (orjson.JSONDecodeError, StateError) as exc:
        raise UnreadableState(f"stored customer record cannot be read: {exc}") from exc


class StateStore:
    """Reads and writes customer records through a bytes table and an LRU cache."""

    def __init__(self, table: MutableMapping[bytes, bytes], cache_size: int) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
        self.table = table
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, CustomerState] = OrderedDict()

    def get(self, key: bytes) -> CustomerState | None:
        cache = self._cache
        state = cache.get(key)
        if state is not None:
            cache.move_to_end(key)
            return state
        raw = self.table.get(key)
        if raw is None:
            return None
        state = decode_state(raw)
        self._remember(key, state)
        return state

    def put(self, key: bytes, state: CustomerState) -> bytes:
        """Write through: the table gets the bytes, which are returned (the
        changelog record's value)."""
        raw = self.table[key] = encode_state(state)
        self._remember(key, state)
        return raw

    def forget_all(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def _remember(self, key: bytes, state: CustomerState) -> None:
        cache = self._cache
        cache[key] = state
        cache.move_to_end(key)
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
