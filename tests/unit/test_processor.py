"""The agent's per-record steps, with a dict for the table and a list for the topics.

The same steps run against the real broker in tests/integration/test_worker.py;
here the counters and the exact records sent are checked cheaply.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.clock import ManualClock
from engine.journey import CustomerState, StageMachine, load_preset
from engine.metrics import Metrics
from engine.settings import Settings
from engine.worker.processor import Outgoing, Processor, Record

NOW = datetime(2026, 3, 10, tzinfo=UTC)
CAT = Catalog(Settings().with_(topic_prefix="p.", touchpoints_topic="p.in"))


class Table(dict[bytes, CustomerState]):
    """What the agent does with a batch result: one write per changed customer."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, int]] = []


def run(processor: Processor, table: Table, *records: Record) -> list[Outgoing]:
    result = processor.process(list(records))
    for key, (state, index) in result.changed.items():
        table[key] = state
        table.writes.append((key, index))
    return result.outgoing


Parts = tuple[Processor, Table, Metrics]


@pytest.fixture
def parts() -> Parts:
    table = Table()
    metrics = Metrics(CollectorRegistry())
    processor = Processor(
        machine=StageMachine(load_preset("saas")),
        states=table,
        catalog=CAT,
        clock=ManualClock(NOW),
        metrics=metrics,
        max_message_bytes=2048,
    )
    return processor, table, metrics


def rec(value: bytes, key: bytes | None = b"u1", topic: str = "p.in", offset: int = 0) -> Record:
    return Record(topic=topic, partition=1, offset=offset, key=key, value=value, headers=[])


def seg(event: str, mid: str, user: str = "u1") -> bytes:
    return orjson.dumps(
        {"type": "track", "event": event, "userId": user, "messageId": mid,
         "timestamp": "2026-03-02T09:00:00Z"}
    )  # fmt: skip


def count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_applied_event_is_stored_and_its_stage_change_sent(parts: Parts) -> None:
    processor, table, metrics = parts
    [out] = run(processor, table, rec(seg("Signed Up", "m1")))
    topic, key, value = out.topic, out.key, out.value
    assert table[b"u1"].stage == "evaluation"
    assert (topic, key) == ("p.journey.stage-changes", b"u1")
    assert orjson.loads(value or b"")["cause"] == {
        "message_id": "m1",
        "rule": "signed_up",
        "event": "Signed Up",
    }
    assert count(metrics, "journey_events_total", type="track", outcome="applied") == 1
    assert (
        count(
            metrics,
            "journey_stage_transitions_total",
            model="saas",
            from_stage="none",
            to_stage="evaluation",
        )
        == 1
    )


def test_duplicate_changes_nothing_and_is_counted(parts: Parts) -> None:
    processor, table, metrics = parts
    assert len(run(processor, table, rec(seg("Signed Up", "m1")))) == 1
    stored = table[b"u1"]
    assert run(processor, table, rec(seg("Signed Up", "m1"), offset=1)) == []
    assert table[b"u1"] is stored
    assert table.writes == [(b"u1", 0)]  # the duplicate wrote nothing
    assert count(metrics, "journey_events_total", type="track", outcome="duplicate") == 1


def test_bad_record_goes_to_dead_letter_with_its_origin(parts: Parts) -> None:
    processor, table, metrics = parts
    [out] = run(processor, table, rec(b"x" * 3000, offset=41))
    topic, key, value, headers = out.topic, out.key, out.value, out.headers
    assert (topic, key, value) == ("p.journey.dead-letter", b"u1", b"x" * 3000)
    h = dict(headers or [])
    assert h["journey.reason"] == b"too_large"
    assert (h["journey.original.topic"], h["journey.original.offset"]) == (b"p.in", b"41")
    assert table == {}
    assert count(metrics, "journey_dead_letters_total", reason="too_large") == 1


def test_miskeyed_record_is_republished_keyed_by_customer(parts: Parts) -> None:
    processor, table, metrics = parts
    value = seg("Signed Up", "m1")
    sent = run(processor, table, rec(value, key=b"session-9"))
    assert sent == [Outgoing("p.journey.touchpoints-rekeyed", b"u1", value, [])]
    assert table == {}
    run(processor, table, rec(value, key=b"u1", topic="p.journey.touchpoints-rekeyed"))
    assert table[b"u1"].stage == "evaluation"
    assert count(metrics, "journey_events_total", type="track", outcome="rekeyed") == 1


def test_a_batch_writes_each_changed_customer_once_with_its_last_record(parts: Parts) -> None:
    processor, table, metrics = parts
    sent = run(
        processor,
        table,
        rec(seg("Signed Up", "a1", user="a"), key=b"a", offset=0),
        rec(seg("Signed Up", "b1", user="b"), key=b"b", offset=1),
        rec(seg("Order Completed", "a2", user="a"), key=b"a", offset=2),
        rec(b"junk", key=b"b", offset=3),
        rec(seg("Signed Up", "a1", user="a"), key=b"a", offset=4),  # repeat within the batch
    )
    assert sorted(table.writes) == [(b"a", 2), (b"b", 1)]
    assert table[b"a"].stage == "acquisition"
    assert [(o.topic, o.key) for o in sent] == [
        ("p.journey.stage-changes", b"a"),
        ("p.journey.stage-changes", b"b"),
        ("p.journey.stage-changes", b"a"),
        ("p.journey.dead-letter", b"b"),
    ]
    assert count(metrics, "journey_events_total", type="track", outcome="applied") == 3
    assert count(metrics, "journey_events_total", type="track", outcome="duplicate") == 1


def test_a_batch_lists_its_stage_changes_in_input_order(parts: Parts) -> None:
    processor, _table, _metrics = parts
    result = processor.process(
        [
            rec(seg("Signed Up", "a1", user="a"), key=b"a", offset=0),
            rec(seg("Signed Up", "b1", user="b"), key=b"b", offset=1),
            rec(seg("Signed Up", "a1", user="a"), key=b"a", offset=2),  # repeat: no change
            rec(seg("Order Completed", "a2", user="a"), key=b"a", offset=3),
        ]
    )
    assert [(c.customer_id, c.from_stage, c.to_stage, c.rule) for c in result.changes] == [
        ("a", None, "evaluation", "signed_up"),
        ("b", None, "evaluation", "signed_up"),
        ("a", "evaluation", "acquisition", "purchased"),
    ]
