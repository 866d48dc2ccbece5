"""The journey worker against the real broker: stages out, bad input aside, nothing lost."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import jsonschema
import orjson
import pytest

from engine.catalog import Catalog, load_schema
from tests.integration.kafka_io import Out, consume_until, produce
from tests.integration.segment import at, iso, record, seg
from tests.integration.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

STAGE_SCHEMA = load_schema("stage-change.schema.json")


def topics(worker: WorkerProcess) -> Catalog:
    return Catalog(worker.settings)


def changes_of(records: list[Out], customer: str) -> list[dict[str, object]]:
    out = []
    for r in records:
        if r.key == customer.encode():
            change = orjson.loads(r.value or b"null")
            jsonschema.validate(change, STAGE_SCHEMA)
            out.append(change)
    return out


def moves(changes: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(c["from_stage"], c["to_stage"], c["cause"]["rule"]) for c in changes]  # type: ignore[index]


async def test_published_journey_comes_back_as_stage_changes(
    running_worker: WorkerProcess, unique_name: str
) -> None:
    cat = topics(running_worker)
    boot = running_worker.settings.kafka_bootstrap
    who = f"c-{unique_name}"
    journey = [
        seg(who, "page", at(0)),
        seg(who, "Product Viewed", at(0, 1)),
        seg(who, "Signed Up", at(1)),
        seg(who, "Order Completed", at(3)),
        seg(who, "Feature Used", at(4)),
        seg(who, "Signed In", at(5)),
        seg(who, "Feature Used", at(6)),
        # Within 14 days of the last activity: the inactive rule would move the
        # customer to at_risk first (tests/integration/test_triggers.py).
        seg(who, "Payment Failed", at(19)),
        seg(who, "Signed In", at(21)),
        seg(who, "Subscription Cancelled", at(34)),
        seg(who, "Trial Started", at(60)),
    ]
    await produce(boot, cat.name(Catalog.TOUCHPOINTS), [record(m) for m in journey])
    expected = [
        (None, "discovery", "first_visit"),
        ("discovery", "evaluation", "signed_up"),
        ("evaluation", "acquisition", "purchased"),
        ("acquisition", "onboarding", "first_activity"),
        ("onboarding", "usage", "habit_formed"),
        ("usage", "at_risk", "payment_failed"),
        ("at_risk", "usage", "reactivated"),
        ("usage", "churned", "cancelled"),
        ("churned", "evaluation", "new_trial"),
    ]
    out = await consume_until(
        boot,
        [cat.name(Catalog.STAGE_CHANGES)],
        lambda rs: len(changes_of(rs, who)) >= len(expected),
        settle=1.0,
    )
    changes = changes_of(out, who)
    assert moves(changes) == expected
    assert changes[0]["cause"]["message_id"] == journey[0]["messageId"]  # type: ignore[index]
    assert changes[4]["at"] == iso(at(6))
    assert changes[6]["visit"] == 2  # back in usage a second time
    assert all(c["model"] == "saas" for c in changes)


async def test_bad_records_go_to_dead_letter_and_good_ones_flow(
    running_worker: WorkerProcess, unique_name: str
) -> None:
    cat = topics(running_worker)
    boot = running_worker.settings.kafka_bootstrap
    good = f"good-{unique_name}"
    bad_values = {
        b"{not json": "not_json",
        b"[1,2]": "not_object",
        orjson.dumps({"type": "teleport", "userId": good, "timestamp": "2026-03-02T09:00:00Z"}): (
            "unknown_type"
        ),
        orjson.dumps(
            {"type": "track", "event": "Signed Up", "timestamp": "2026-03-02T09:00:00Z"}
        ): ("no_customer"),
        orjson.dumps(
            {"type": "track", "event": "Signed Up", "userId": good, "timestamp": "soon"}
        ): ("bad_timestamp"),
        orjson.dumps({"type": "track", "userId": good, "timestamp": "2026-03-02T09:00:00Z"}): (
            "missing_field"
        ),
        b'{"type":"page","userId":"x","timestamp":"2026-03-02T09:00:00Z","pad":"'
        + b"x" * 40_000
        + b'"}': "too_large",
    }
    records: list[tuple[bytes | None, bytes, None]] = [record(seg(good, "page", at(0)))]
    for value in bad_values:
        records.append((good.encode(), value, None))
    records.append(record(seg(good, "Signed Up", at(1))))
    where = await produce(boot, cat.name(Catalog.TOUCHPOINTS), records)

    dead = await consume_until(
        boot,
        [cat.name(Catalog.DEAD_LETTER)],
        lambda rs: sum(r.key == good.encode() for r in rs) >= len(bad_values),
    )
    mine = [r for r in dead if r.key == good.encode()]
    assert {r.value: r.headers["journey.reason"].decode() for r in mine} == bad_values
    for r, (partition, offset) in zip(mine, where[1:-1], strict=True):
        assert r.headers["journey.original.topic"] == cat.name(Catalog.TOUCHPOINTS).encode()
        assert r.headers["journey.original.partition"] == str(partition).encode()
        assert r.headers["journey.original.offset"] == str(offset).encode()
        assert r.headers["journey.exception"] == b"BadInput"
        assert r.headers["journey.error"]

    out = await consume_until(
        boot, [cat.name(Catalog.STAGE_CHANGES)], lambda rs: len(changes_of(rs, good)) >= 2
    )
    assert moves(changes_of(out, good)) == [
        (None, "discovery", "first_visit"),
        ("discovery", "evaluation", "signed_up"),
    ]


async def test_repeated_message_id_changes_nothing(
    running_worker: WorkerProcess, unique_name: str
) -> None:
    cat = topics(running_worker)
    boot = running_worker.settings.kafka_bootstrap
    who = f"dup-{unique_name}"
    signup = seg(who, "Signed Up", at(1), mid=f"m-{unique_name}")
    cancel = seg(who, "Subscription Cancelled", at(2), mid=f"x-{unique_name}")
    trial_again = seg(who, "Trial Started", at(3), mid=f"m-{unique_name}")  # same messageId
    marker = seg(who, "Order Completed", at(4))
    await produce(
        boot,
        cat.name(Catalog.TOUCHPOINTS),
        [record(signup), record(signup), record(cancel), record(trial_again), record(marker)],
    )
    out = await consume_until(
        boot,
        [cat.name(Catalog.STAGE_CHANGES)],
        lambda rs: any(c["to_stage"] == "acquisition" for c in changes_of(rs, who)),
        settle=1.0,
    )
    # The replayed signup and the Trial Started that reuses its messageId are dropped:
    # without dedupe, churned -> evaluation (new_trial) would appear before the purchase.
    assert moves(changes_of(out, who)) == [
        (None, "evaluation", "signed_up"),
        ("evaluation", "churned", "cancelled"),
        ("churned", "acquisition", "purchased"),
    ]


async def test_cloudevents_and_miskeyed_records_are_applied(
    running_worker: WorkerProcess, unique_name: str
) -> None:
    cat = topics(running_worker)
    boot = running_worker.settings.kafka_bootstrap
    who = f"ce-{unique_name}"
    data = {"type": "track", "event": "Signed Up", "userId": who}
    ce_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"ce-{unique_name}".encode()),
        ("ce_type", b"com.segment.track"),
        ("ce_source", b"/tests"),
        ("ce_time", iso(at(0, 1)).encode()),
        ("content-type", b"application/json"),
    ]
    wrong_key = seg(who, "Order Completed", at(2))
    await produce(
        boot,
        cat.name(Catalog.TOUCHPOINTS),
        [
            (who.encode(), orjson.dumps(data), ce_headers),
            (b"some-other-key", orjson.dumps(wrong_key), None),
        ],
    )
    out = await consume_until(
        boot, [cat.name(Catalog.STAGE_CHANGES)], lambda rs: len(changes_of(rs, who)) >= 2
    )
    changes = changes_of(out, who)
    assert moves(changes) == [
        (None, "evaluation", "signed_up"),
        ("evaluation", "acquisition", "purchased"),
    ]
    assert changes[0]["cause"]["message_id"] == f"ce-{unique_name}"  # type: ignore[index]
    assert changes[0]["at"] == iso(at(0, 1))


async def test_repeats_are_counted_on_the_metrics_page(
    running_worker: WorkerProcess, unique_name: str
) -> None:
    cat = topics(running_worker)
    boot = running_worker.settings.kafka_bootstrap
    url = f"http://127.0.0.1:{running_worker.settings.web_port}/metrics"
    before = scrape(url)
    who = f"m-{unique_name}"
    signup = seg(who, "Signed Up", at(1))
    await produce(
        boot, cat.name(Catalog.TOUCHPOINTS), [record(signup), record(signup), record(signup)]
    )
    await consume_until(
        boot, [cat.name(Catalog.STAGE_CHANGES)], lambda rs: len(changes_of(rs, who)) >= 1
    )
    dup = 'journey_events_total{outcome="duplicate",type="track"}'
    deadline = time.monotonic() + 20
    after = scrape(url)
    # The counter moves when the batch holding the repeats has been processed.
    while after.get(dup, 0.0) - before.get(dup, 0.0) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        after = scrape(url)
    assert after.get(dup, 0.0) - before.get(dup, 0.0) == 2


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
