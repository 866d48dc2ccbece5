"""The processor against a plain oracle built from the reference decoder and machine.

Simulated traffic with bad records, redeliveries, records keyed by something else
and records from the re-keyed topic, in batches: the records sent (bytes and
headers), the customers changed with their record index, the stored records and
the metric samples must be what the plain steps give.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from engine.catalog import Catalog
from engine.clock import ManualClock
from engine.ingest import BadInput
from engine.journey import CustomerState, StageChanged, StageMachine, load_preset
from engine.messages import dead_letter_headers
from engine.metrics import Metrics
from engine.settings import Settings
from engine.simulate import BAD_SAMPLES, encode, journeys
from engine.worker.processor import Outgoing, Processor, Record
from engine.worker.state_store import StateStore, encode_state
from tests.unit.reference_ingest import reference_decode
from tests.unit.reference_machine import reference_apply

NOW = datetime(2026, 3, 10, 12, 0, 0, 250000, tzinfo=UTC)
CAT = Catalog(Settings().with_(topic_prefix="p.", touchpoints_topic="p.in"))
REKEYED = CAT.name(Catalog.REKEYED)
LIMIT = 2048


def traffic(seed: int) -> list[Record]:
    rng = random.Random(seed)
    out: list[Record] = []
    for at, customer, msg in journeys(60, seed, NOW):
        value = encode(at, msg, rng)
        roll = rng.random()
        key = customer.encode()
        topic = "p.in"
        if roll < 0.05:
            key = b"session-" + key  # keyed by something else
        elif roll < 0.08:
            topic = REKEYED
        out.append(Record(topic, 1, len(out), key, value, [], 1_700_000_000_000 + len(out)))
        if rng.random() < 0.1:  # delivered again
            out.append(Record(topic, 1, len(out), key, value, []))
        if rng.random() < 0.04:
            out.append(Record("p.in", 1, len(out), key, rng.choice(BAD_SAMPLES), [("h", b"1")]))
    return out


def plain_iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain_process(
    machine: StageMachine, states: dict[bytes, CustomerState], batch: list[Record], now: datetime
) -> tuple[list[Outgoing], dict[bytes, tuple[CustomerState, int]], dict[Any, int]]:
    """What the processor does for a batch, step by step with the plain decoder,
    machine and formatting; ``states`` is updated at the end as the agent would."""
    outgoing: list[Outgoing] = []
    changed: dict[bytes, tuple[CustomerState, int]] = {}
    counts: dict[Any, int] = {}

    def bump(*key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    for index, record in enumerate(batch):
        try:
            event = reference_decode(record.value, record.headers, max_bytes=LIMIT)
        except BadInput as exc:
            headers = dead_letter_headers(
                exc,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp,
                failed_at=now,
            )
            outgoing.append(
                Outgoing(CAT.name(Catalog.DEAD_LETTER), record.key, record.value,
                         [*record.headers, *headers])
            )  # fmt: skip
            bump("events", "unknown", "dead_letter")
            bump("dead", exc.reason)
            continue
        key = event.customer_id.encode("utf-8")
        if record.topic != REKEYED and record.key != key:
            outgoing.append(Outgoing(REKEYED, key, record.value, record.headers))
            bump("events", event.type.value, "rekeyed")
            continue
        state = changed[key][0] if key in changed else states.get(key)
        new, effects = reference_apply(machine, state, event, now)
        if new is not state:
            changed[key] = (new, index)
        outcome = "applied"
        for effect in effects:
            if isinstance(effect, StageChanged):
                payload = {
                    "customer_id": effect.customer_id,
                    "from_stage": effect.from_stage,
                    "to_stage": effect.to_stage,
                    "at": plain_iso(effect.at),
                    "model": effect.model,
                    "model_version": effect.model_version,
                    "visit": effect.visit,
                    "time_in_previous_stage_s": effect.time_in_previous_s,
                    "late": effect.late,
                    "cause": {
                        "message_id": effect.message_id,
                        "rule": effect.rule,
                        "event": effect.event,
                    },
                    "processed_at": plain_iso(now),
                }
                outgoing.append(
                    Outgoing(CAT.name(Catalog.STAGE_CHANGES), key, orjson.dumps(payload))
                )
                bump("moved", effect.model, effect.from_stage or "none", effect.to_stage)
            else:
                outcome = "duplicate"
        bump("events", event.type.value, outcome)
    for key, (state, _index) in changed.items():
        states[key] = state
    return outgoing, changed, counts


COUNTERS = (
    "journey_events_total",
    "journey_dead_letters_total",
    "journey_stage_transitions_total",
)


def samples(metrics: Metrics) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name in COUNTERS:
                out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def expected_samples(counts: dict[Any, int]) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for key, n in counts.items():
        if key[0] == "events":
            name, labels = "journey_events_total", {"type": key[1], "outcome": key[2]}
        elif key[0] == "dead":
            name, labels = "journey_dead_letters_total", {"reason": key[1]}
        else:
            name = "journey_stage_transitions_total"
            labels = {"model": key[1], "from_stage": key[2], "to_stage": key[3]}
        sample = name, tuple(sorted(labels.items()))
        out[sample] = out.get(sample, 0.0) + n
    return out


def test_processor_equals_the_plain_steps_batch_by_batch() -> None:
    machine = StageMachine(load_preset("saas"), dedupe_max_ids=8, history_limit=4)
    records = traffic(5)
    table: dict[bytes, bytes] = {}
    store = StateStore(table, cache_size=25)  # smaller than the customers: records are reread
    clock = ManualClock(NOW)
    metrics = Metrics(CollectorRegistry())
    processor = Processor(
        machine=machine,
        states=store,
        catalog=CAT,
        clock=clock,
        metrics=metrics,
        max_message_bytes=LIMIT,
    )
    plain_states: dict[bytes, CustomerState] = {}
    all_counts: dict[Any, int] = {}
    kinds: set[str] = set()
    start, now = 0, NOW
    rng = random.Random(1)
    while start < len(records):
        size = rng.randint(1, 60)
        batch = records[start : start + size]
        start += size
        now += timedelta(milliseconds=rng.randint(0, 90_000_000))  # days apart at times
        clock.set(now)
        result = processor.process(batch)
        for key, (state, _index) in result.changed.items():
            store.put(key, state)
        # A stored record read back equals the state after the same steps, to the ms.
        want_out, want_changed, counts = plain_process(machine, plain_states, batch, now)
        assert result.outgoing == want_out
        assert {k: (encode_state(s), i) for k, (s, i) in result.changed.items()} == {
            k: (encode_state(s), i) for k, (s, i) in want_changed.items()
        }
        for key, n in counts.items():
            all_counts[key] = all_counts.get(key, 0) + n
        kinds |= {o.topic for o in result.outgoing}
    assert samples(metrics) == expected_samples(all_counts)
    assert {k: table[k] for k in plain_states} == {
        k: encode_state(s) for k, s in plain_states.items()
    }
    assert kinds == {
        CAT.name(Catalog.STAGE_CHANGES),
        CAT.name(Catalog.DEAD_LETTER),
        REKEYED,
    }
    assert any(k[0] == "events" and k[2] == "duplicate" for k in all_counts)
