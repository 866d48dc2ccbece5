"""What the read side needs of the customers table, partition by partition.

The table's store is Faust's memory store (one dict for every partition, with
``_key_partition`` for the keys recovery read) or its RocksDB store (one database
per partition). :class:`TableView` gives both the same small interface: a key's
partition, a customer's stored record, the records of given partitions (to count
customers per stage when partitions are assigned) and the number of keys.

Customers are located like Faust's router and the sink do: the Kafka default
partitioner, murmur2 of the customer id modulo the partition count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from engine.metrics import StageKey
from engine.worker.state_store import UnreadableState, decode_state

#: Records counted between two yields to the event loop while partitions are scanned.
SCAN_CHUNK = 20_000

_MODEL_AT = b',"m":'
_STAGE_END = b',"se":'


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Kafka default partitioner gives ``key`` (as the sink does)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def stage_of(raw: bytes) -> StageKey | None:
    """(model, stage) of a stored customer record; None for a customer with no stage.

    Records are ``orjson`` of :meth:`CustomerState.to_dict` (``{"v":1,"id":..,"m":..,
    "mv":..,"s":..,"se":..}``); the model and stage are read from that slice
    without decoding the rest. Inside a JSON string a quote is always escaped, so
    ``,"m":`` and ``,"se":`` can only be the keys themselves. Any other record is
    decoded whole, and one that cannot be raises
    :class:`~engine.worker.state_store.UnreadableState`.
    """
    start = raw.find(_MODEL_AT)
    end = raw.find(_STAGE_END, start)
    if start < 0 or end < 0 or not raw.startswith(b'{"v":1,'):
        state = decode_state(raw)
        return None if state.stage is None else (state.model, state.stage)
    return _slice_stage(raw[start:end])


def _slice_stage(piece: bytes) -> StageKey | None:
    """(model, stage) of a ``,"m":..,"mv":..,"s":..`` slice of a record."""
    try:
        doc = orjson.loads(b"{" + piece[1:] + b"}")
        stage = doc["s"]
        return None if stage is None else (str(doc["m"]), str(stage))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UnreadableState(f"stored customer record cannot be read: {exc!r}") from exc


class StageTally:
    """Customers per (model, stage) from raw records; each distinct slice decoded once."""

    def __init__(self) -> None:
        self._slices: Counter[bytes] = Counter()
        self._other: Counter[StageKey] = Counter()

    def add(self, raw: bytes) -> None:
        start = raw.find(_MODEL_AT)
        end = raw.find(_STAGE_END, start)
        if start < 0 or end < 0 or not raw.startswith(b'{"v":1,'):
            found = stage_of(raw)
            if found is not None:
                self._other[found] += 1
        else:
            self._slices[raw[start:end]] += 1

    def counts(self) -> Counter[StageKey]:
        out = Counter(self._other)
        for piece, n in self._slices.items():
            found = _slice_stage(piece)
            if found is not None:
                out[found] += n
        return out


class TableView:
    """Partition-aware reads of a Faust table whose values are the raw records."""

    def __init__(self, table: Any, partitions: int) -> None:
        self._table = table
        self.partitions = partitions

    @property
    def _store(self) -> Any:
        return self._table.data

    def partition_of(self, key: bytes) -> int:
        return key_partition(key, self.partitions)

    def get(self, key: bytes) -> bytes | None:
        """The stored record of ``key`` (the caller checks the partition is owned)."""
        value: bytes | None = self._store.get(key)
        return value

    def note_written(self, partition: int, keys: Iterable[bytes]) -> None:
        """Keys the agent wrote to ``partition``.

        The memory store learns the partition of the keys recovery reads only; told
        the others too, it drops every key of a partition that moved away when the
        next recovery completes (as it does for recovered keys), and the partition
        can be scanned. The RocksDB store keeps one database per partition anyway.
        """
        index = getattr(self._store, "_key_partition", None)
        if index is not None:
            index.update(dict.fromkeys(keys, partition))

    def size(self, owned: Iterable[int]) -> int:
        """Keys in the owned partitions (RocksDB: its estimate per partition)."""
        store = self._store
        dbs = getattr(store, "_dbs", None)
        if dbs is None:
            return len(store.data)
        total = 0
        for partition in owned:
            db = dbs.get(partition)
            if db is not None:
                total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return total

    def records(self, partitions: set[int]) -> Iterator[tuple[int, bytes]]:
        """(partition, raw record) of every key of ``partitions``."""
        store = self._store
        dbs = getattr(store, "_dbs", None)
        if dbs is None:
            data = store.data
            # A snapshot: the store may drop keys while the caller yields.
            for key, partition in list(store._key_partition.items()):
                if partition in partitions:
                    value = data.get(key)
                    if value is not None:
                        yield partition, value
            return
        offset_key = getattr(store, "offset_key", None)
        for partition in sorted(partitions):
            db = dbs.get(partition)
            if db is None:
                continue
            for key, value in db.items():
                if key != offset_key and value is not None:
                    yield partition, value

    async def stage_counts(
        self, partitions: set[int], still_wanted: Callable[[], bool]
    ) -> dict[int, Counter[StageKey]] | None:
        """Customers per stage in each of ``partitions``, yielding to the event loop
        every :data:`SCAN_CHUNK` records; None once ``still_wanted()`` turns False."""
        tallies = {p: StageTally() for p in partitions}
        for n, (partition, raw) in enumerate(self.records(partitions), 1):
            tallies[partition].add(raw)
            if n % SCAN_CHUNK == 0:
                await asyncio.sleep(0)
                if not still_wanted():
                    return None
        return {p: t.counts() for p, t in tallies.items()}
