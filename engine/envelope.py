"""Touchpoint batches: many input records of one partition in one Kafka message.

The batcher reads the touchpoints (and re-keyed touchpoints) with a plain Kafka
consumer and writes what it fetched from partition ``p`` as one message to
partition ``p`` of the batch topic; the journey agent reads batches. Faust's
per-message work is then paid once per batch instead of once per touchpoint.

Each record keeps everything the agent reads and the dead-letter headers name:
origin topic, partition, offset, timestamp, key, value and headers, byte for byte.

Layout (little endian)::

    b"JTB1"  u16 topic length  topic (UTF-8)  i32 partition  u32 count
    count x record:
        i64 offset  i64 timestamp ms (-1: none)  i32 key length (-1: none)
        i32 value length (-1: none)  u16 header count  key  value
        header count x (u16 name length  name (UTF-8)  i32 value length  value)
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAGIC = b"JTB1"
_HEAD = struct.Struct("<4sH")
_SOURCE = struct.Struct("<iI")
_RECORD = struct.Struct("<qqiiH")
_NAME = struct.Struct("<H")
_LEN = struct.Struct("<i")

Headers = list[tuple[str, bytes]]


class BadEnvelope(ValueError):
    """A batch message that is not in the layout above."""


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One input record as the batcher fetched it."""

    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Batch:
    topic: str
    partition: int
    records: list[SourceRecord]

    def to_json(self) -> dict[str, Any]:
        """The logical content (topics/schemas/touchpoint-batch.schema.json), bytes in base64."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "records": [
                {
                    "offset": r.offset,
                    "timestamp_ms": r.timestamp_ms,
                    "key": _b64(r.key),
                    "value": _b64(r.value),
                    "headers": [[name, _b64(value)] for name, value in r.headers],
                }
                for r in self.records
            ],
        }


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def encoded_size(record: SourceRecord) -> int:
    """Bytes ``record`` takes in a batch."""
    size = _RECORD.size + len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers:
        size += _NAME.size + len(name.encode("utf-8")) + _LEN.size + len(value)
    return size


def encode(topic: str, partition: int, records: Sequence[SourceRecord]) -> bytes:
    name = topic.encode("utf-8")
    parts: list[bytes] = [
        _HEAD.pack(MAGIC, len(name)),
        name,
        _SOURCE.pack(partition, len(records)),
    ]
    append, record_head = parts.append, _RECORD.pack
    for r in records:
        key, value, headers = r.key, r.value, r.headers
        append(
            record_head(
                r.offset,
                -1 if r.timestamp_ms is None else r.timestamp_ms,
                -1 if key is None else len(key),
                -1 if value is None else len(value),
                len(headers),
            )
        )
        if key:
            append(key)
        if value:
            append(value)
        for hname, hvalue in headers:
            raw = hname.encode("utf-8")
            append(_NAME.pack(len(raw)))
            append(raw)
            append(_LEN.pack(len(hvalue)))
            append(hvalue)
    return b"".join(parts)


def decode(data: bytes) -> Batch:
    """The batch in ``data``; :class:`BadEnvelope` if it is not one."""
    try:
        return _decode(data)
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise BadEnvelope(f"truncated or malformed touchpoint batch: {exc}") from None


def _decode(data: bytes) -> Batch:
    if data[:4] != MAGIC:
        raise BadEnvelope(f"not a touchpoint batch (starts with {data[:4]!r})")
    _, name_len = _HEAD.unpack_from(data, 0)
    pos = _HEAD.size
    topic = data[pos : pos + name_len].decode("utf-8")
    pos += name_len
    partition, count = _SOURCE.unpack_from(data, pos)
    pos += _SOURCE.size
    records: list[SourceRecord] = []
    append, record_head, size = records.append, _RECORD.unpack_from, _RECORD.size
    end = len(data)
    for _ in range(count):
        offset, ts, klen, vlen, nheaders = record_head(data, pos)
        pos += size
        key = value = None
        if klen >= 0:
            key = data[pos : pos + klen]
            pos += klen
        if vlen >= 0:
            value = data[pos : pos + vlen]
            pos += vlen
        headers: Headers = []
        for _h in range(nheaders):
            (hlen,) = _NAME.unpack_from(data, pos)
            pos += _NAME.size
            hname = data[pos : pos + hlen].decode("utf-8")
            pos += hlen
            (hvlen,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            headers.append((hname, data[pos : pos + hvlen]))
            pos += hvlen
        if pos > end:
            raise BadEnvelope("touchpoint batch ends inside a record")
        append(SourceRecord(offset, None if ts < 0 else ts, key, value, headers))
    if pos != end:
        raise BadEnvelope(f"touchpoint batch has {end - pos} bytes after its last record")
    return Batch(topic, partition, records)


def chunks(
    records: Iterable[SourceRecord], *, max_records: int, max_bytes: int
) -> Iterable[list[SourceRecord]]:
    """Split ``records`` into batches of at most ``max_records`` and about ``max_bytes``
    (a single record larger than ``max_bytes`` travels alone)."""
    chunk: list[SourceRecord] = []
    size = 0
    for record in records:
        n = encoded_size(record)
        if chunk and (len(chunk) >= max_records or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += n
    if chunk:
        yield chunk
