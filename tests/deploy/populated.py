"""A registry with every metric of :class:`engine.metrics.Metrics` holding a sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from engine.journey import StageChanged
from engine.metrics import Metrics, StageGauge

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def populated_metrics() -> Metrics:
    """Every metric used once, the way the worker uses it."""
    m = Metrics(CollectorRegistry())
    m.events.labels("track", "applied").inc(3)
    m.events.labels("unknown", "dead_letter").inc()
    m.dead_letters.labels("not_json").inc()
    m.observe_event_latency(T0, T0 + timedelta(milliseconds=120))
    m.emit_latency.observe(0.004)
    m.transitions.labels("saas", "none", "discovery").inc()
    m.transitions.labels("saas", "discovery", "evaluation").inc()
    m.observe_stage_changes(
        [
            StageChanged("c1", "discovery", "evaluation", T0, "saas", 1, "r", "m", "e", 1, 3600.0),
        ]
    )
    gauge = StageGauge(m.customers)
    gauge.assign(0, {("saas", "evaluation"): 4, ("saas", "usage"): 2})
    m.count_triggers({("nurture", "sent"): 2, ("churn_risk", "suppressed_cooldown"): 1})
    m.timers_pending.set(12)
    m.timers_fired.labels("inactivity").inc()
    m.timers_ignored.labels("superseded").inc()
    m.timer_lag.observe(0.3)
    m.consumer_lag.labels("touchpoints", "0").set(42)
    m.assigned_partitions.set(4)
    m.table_size.labels("customers").set(6)
    m.rebalances.inc()
    m.redis_errors.labels("connection").inc()
    m.redis_pending.set(17)
    m.redis_dropped.inc(0)
    m.redis_written.inc(100)
    m.redis_flush.observe(0.002)
    return m
