"""Touchpoint batches: byte-for-byte round trips, limits, and malformed input."""

from __future__ import annotations

import jsonschema
import pytest

from engine import envelope
from engine.catalog import load_schema
from engine.envelope import BadEnvelope, SourceRecord

RECORDS = [
    SourceRecord(0, 1_700_000_000_000, b"cust-1", b'{"type":"page"}', []),
    SourceRecord(1, None, None, None, []),
    SourceRecord(7, 5, b"", b"", [("ce_id", b"x"), ("\u00e9t\u00e9", b"\x00\xff")]),
    SourceRecord(2**40, -1 + 2, b"k" * 300, bytes(range(256)) * 10, [("h", b"")]),
]


def test_round_trip_keeps_every_field_byte_for_byte() -> None:
    data = envelope.encode("touchpoints", 3, RECORDS)
    batch = envelope.decode(data)
    assert (batch.topic, batch.partition) == ("touchpoints", 3)
    assert batch.records == RECORDS


def test_empty_key_and_value_stay_distinct_from_none() -> None:
    batch = envelope.decode(envelope.encode("t", 0, RECORDS[1:3]))
    assert batch.records[0].key is None
    assert batch.records[0].value is None
    assert batch.records[1].key == b""
    assert batch.records[1].value == b""


def test_logical_form_follows_the_schema() -> None:
    batch = envelope.decode(envelope.encode("touchpoints", 0, RECORDS))
    jsonschema.validate(batch.to_json(), load_schema("touchpoint-batch.schema.json"))
    assert batch.to_json()["records"][0]["value"] == "eyJ0eXBlIjoicGFnZSJ9"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a touchpoint batch"),
        (b"JTB2" + b"\x00" * 20, "not a touchpoint batch"),
        (envelope.encode("t", 0, RECORDS)[:-3], "truncated or malformed"),
        (envelope.encode("t", 0, RECORDS) + b"zz", "2 bytes after its last record"),
        (envelope.encode("t", 0, RECORDS)[:12], "truncated or malformed"),
    ],
)
def test_malformed_batches_are_refused_with_a_reason(data: bytes, words: str) -> None:
    with pytest.raises(BadEnvelope, match=words):
        envelope.decode(data)


def test_chunks_respect_count_and_size_and_keep_order() -> None:
    records = [SourceRecord(i, None, b"k", b"v" * 100, []) for i in range(25)]
    by_count = list(envelope.chunks(records, max_records=10, max_bytes=1 << 20))
    assert [len(c) for c in by_count] == [10, 10, 5]
    size = envelope.encoded_size(records[0])
    by_size = list(envelope.chunks(records, max_records=100, max_bytes=size * 4))
    assert [len(c) for c in by_size] == [4, 4, 4, 4, 4, 4, 1]
    assert [r.offset for c in by_size for r in c] == list(range(25))


def test_a_record_larger_than_the_limit_travels_alone() -> None:
    big = SourceRecord(1, None, None, b"x" * 5000, [])
    small = SourceRecord(2, None, None, b"y", [])
    chunks = list(envelope.chunks([small, big, small], max_records=10, max_bytes=1000))
    assert [[r.offset for r in c] for c in chunks] == [[2], [1], [2]]
