"""The metrics module: helpers and the per-partition stage gauge bookkeeping."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from engine.journey import CustomerState, StageChanged
from engine.metrics import Metrics, StageGauge, stage_counts

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def change(
    customer: str, from_stage: str | None, to_stage: str, spent: float | None = None
) -> StageChanged:
    return StageChanged(
        customer_id=customer,
        from_stage=from_stage,
        to_stage=to_stage,
        at=T0,
        model="saas",
        model_version=1,
        rule="r",
        message_id="m",
        event="e",
        visit=1,
        time_in_previous_s=spent,
    )


def gauge_value(metrics: Metrics, stage: str, model: str = "saas") -> float | None:
    return metrics.registry.get_sample_value("journey_customers", {"model": model, "stage": stage})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_stage_changes_move_one_customer_each(metrics: Metrics) -> None:
    gauge = StageGauge(metrics.customers)
    gauge.apply(0, [change("a", None, "discovery"), change("b", None, "discovery")])
    gauge.apply(0, [change("a", "discovery", "evaluation")])
    assert gauge_value(metrics, "discovery") == 1
    assert gauge_value(metrics, "evaluation") == 1
    assert gauge.totals() == {("saas", "discovery"): 1, ("saas", "evaluation"): 1}


def test_revoking_a_partition_takes_off_exactly_its_customers(metrics: Metrics) -> None:
    gauge = StageGauge(metrics.customers)
    gauge.assign(0, {("saas", "usage"): 5, ("saas", "churned"): 2})
    gauge.assign(1, {("saas", "usage"): 3})
    gauge.apply(1, [change("x", "usage", "at_risk")])
    gauge.revoke(0)
    assert gauge_value(metrics, "usage") == 2
    assert gauge_value(metrics, "churned") == 0
    assert gauge_value(metrics, "at_risk") == 1
    assert gauge.partitions == frozenset({1})
    gauge.revoke(0)  # twice: nothing more taken off
    assert gauge_value(metrics, "usage") == 2


def test_assigning_again_replaces_what_was_counted(metrics: Metrics) -> None:
    gauge = StageGauge(metrics.customers)
    gauge.apply(3, [change("a", None, "discovery")])
    gauge.assign(3, {("saas", "discovery"): 4})
    assert gauge_value(metrics, "discovery") == 4
    gauge.revoke_all()
    assert gauge.totals() == {}


def test_gauges_of_workers_sum_to_the_truth_before_and_after_partitions_move() -> None:
    """Two workers share four partitions; one stops and the other takes everything."""
    rng = random.Random(5)
    stages = ["discovery", "evaluation", "acquisition", "at_risk"]
    where: dict[str, tuple[int, str]] = {}  # customer -> (partition, stage): the truth
    workers = [Metrics(CollectorRegistry(), process=False) for _ in range(2)]
    gauges = [StageGauge(w.customers) for w in workers]
    owner = {0: 0, 1: 0, 2: 1, 3: 1}
    for p, w in owner.items():
        gauges[w].assign(p, {})

    def churn(steps: int) -> None:
        for _ in range(steps):
            customer = f"c{rng.randrange(60)}"
            partition = hash(customer) % 4
            before = where.get(customer, (partition, None))[1]
            after = rng.choice([s for s in stages if s != before])
            where[customer] = (partition, after)
            gauges[owner[partition]].apply(partition, [change(customer, before, after)])

    def truth() -> Counter[tuple[str, str]]:
        return Counter(("saas", stage) for _, stage in where.values())

    def summed() -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        for g in gauges:
            total.update(g.totals())
        return +total

    churn(400)
    assert summed() == truth()
    # Worker 1 stops: its partitions are revoked there and assigned to worker 0,
    # which counts them from the recovered table.
    for p in (2, 3):
        gauges[1].revoke(p)
        recovered = Counter(("saas", s) for (q, s) in where.values() if q == p)
        gauges[0].assign(p, recovered)
        owner[p] = 0
    assert gauges[1].totals() == {}
    assert summed() == truth()
    churn(200)
    assert summed() == truth()
    for stage in stages:
        exported = workers[0].registry.get_sample_value(
            "journey_customers", {"model": "saas", "stage": stage}
        )
        assert exported == truth()[("saas", stage)]


def test_stage_counts_leave_out_customers_without_a_stage() -> None:
    states = [
        CustomerState("a", "saas", 1, stage="usage"),
        CustomerState("b", "saas", 1, stage="usage"),
        CustomerState("c", "aida", 1, stage="interest"),
        CustomerState("d", "saas", 1),
    ]
    assert stage_counts(states) == {("saas", "usage"): 2, ("aida", "interest"): 1}


def test_time_in_stage_is_observed_for_the_stage_left(metrics: Metrics) -> None:
    metrics.observe_stage_changes(
        [change("a", None, "discovery"), change("a", "discovery", "evaluation", spent=7200.0)]
    )
    labels = {"model": "saas", "stage": "discovery"}
    reg = metrics.registry
    assert reg.get_sample_value("journey_time_in_stage_seconds_count", labels) == 1
    assert reg.get_sample_value("journey_time_in_stage_seconds_sum", labels) == 7200.0
    bucket = "journey_time_in_stage_seconds_bucket"
    assert reg.get_sample_value(bucket, {**labels, "le": "3600.0"}) == 0
    assert reg.get_sample_value(bucket, {**labels, "le": "21600.0"}) == 1


def test_event_latency_in_seconds_and_never_negative(metrics: Metrics) -> None:
    metrics.observe_event_latency(T0, T0 + timedelta(milliseconds=40))
    metrics.observe_event_latency(T0 + timedelta(seconds=5), T0)  # publisher clock ahead
    reg = metrics.registry
    assert reg.get_sample_value("journey_event_latency_seconds_count") == 2
    assert reg.get_sample_value("journey_event_latency_seconds_sum") == pytest.approx(0.04)
    assert reg.get_sample_value("journey_event_latency_seconds_bucket", {"le": "0.01"}) == 1


def test_trigger_decisions_are_counted(metrics: Metrics) -> None:
    metrics.count_triggers({("nurture", "sent"): 3, ("nurture", "suppressed_cooldown"): 1})
    value = metrics.registry.get_sample_value(
        "journey_triggers_total", {"trigger": "nurture", "decision": "sent"}
    )
    assert value == 3


def test_process_metrics_are_on_the_registry_passed_in() -> None:
    with_process = Metrics(CollectorRegistry())
    without = Metrics(CollectorRegistry(), process=False)
    assert with_process.registry.get_sample_value("process_cpu_seconds_total") is not None
    assert with_process.registry.get_sample_value("python_info", _python_info()) == 1
    assert without.registry.get_sample_value("process_cpu_seconds_total") is None


def _python_info() -> dict[str, str]:
    import platform

    major, minor, patch = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }


def test_consumer_lag_keeps_only_the_partitions_owned(metrics: Metrics) -> None:
    metrics.set_consumer_lag({("touchpoints", 0): 12, ("touchpoints", 1): 3})
    metrics.set_consumer_lag({("touchpoints", 1): 5, ("journey.timers", 1): -2})
    reg = metrics.registry
    lag = "journey_consumer_lag_records"
    assert reg.get_sample_value(lag, {"topic": "touchpoints", "partition": "0"}) is None
    assert reg.get_sample_value(lag, {"topic": "touchpoints", "partition": "1"}) == 5
    assert reg.get_sample_value(lag, {"topic": "journey.timers", "partition": "1"}) == 0
