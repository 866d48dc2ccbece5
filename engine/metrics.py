"""Every Prometheus metric of the engine, declared once against a registry passed in.

Conventions: base units (seconds), ``_total`` on counters (prometheus_client adds
it to the declared name), bounded labels only: call types, outcomes, reasons,
model and stage names, topics and partitions. Never a customer id, an email or
free text.
"""

from __future__ import annotations

import urllib.request
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.parser import text_string_to_metric_families

from engine.journey import CustomerState, StageChanged

#: Event time to processed: publishers and the broker add seconds, replays hours.
EVENT_LATENCY_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
#: Processed to emitted (the producer confirmed the batch's sends).
EMIT_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_MIN, _HOUR, _DAY = 60.0, 3600.0, 86400.0
#: Time in a lifecycle stage: minutes to a year.
TIME_IN_STAGE_BUCKETS = (
    _MIN, 10 * _MIN, _HOUR, 6 * _HOUR, _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY,
    90 * _DAY, 180 * _DAY, 365 * _DAY,
)  # fmt: skip
#: How late a timer fired after its due time.
TIMER_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: One pipelined flush of the Redis profile store.
REDIS_FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

#: Label value for a customer's first stage (``from_stage`` of None).
NO_STAGE = "none"


class Metrics:
    """The engine's metrics. ``process=True`` adds the standard process, platform
    and garbage-collector collectors to the registry (once per registry)."""

    def __init__(self, registry: CollectorRegistry, *, process: bool = True) -> None:
        self.registry = registry
        r = registry
        # ------------------------------------------------------------ input
        self.events = Counter(
            "journey_events_total",
            "Touchpoints consumed, by Segment call type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "journey_dead_letters_total",
            "Records set aside on the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.event_latency = Histogram(
            "journey_event_latency_seconds",
            "Event time (the touchpoint's timestamp) to processed by the worker",
            buckets=EVENT_LATENCY_BUCKETS,
            registry=r,
        )
        self.emit_latency = Histogram(
            "journey_emit_latency_seconds",
            "Processed to emitted: a batch's outputs confirmed by the broker",
            buckets=EMIT_LATENCY_BUCKETS,
            registry=r,
        )
        # ------------------------------------------------------------ stages
        self.transitions = Counter(
            "journey_stage_transitions_total",
            "Lifecycle stage transitions",
            ["model", "from_stage", "to_stage"],
            registry=r,
        )
        self.customers = Gauge(
            "journey_customers",
            "Customers per lifecycle stage in the partitions this worker owns",
            ["model", "stage"],
            registry=r,
        )
        self.time_in_stage = Histogram(
            "journey_time_in_stage_seconds",
            "Time customers spent in a stage, observed when they leave it",
            ["model", "stage"],
            buckets=TIME_IN_STAGE_BUCKETS,
            registry=r,
        )
        # ------------------------------------------------------------ triggers and timers
        self.triggers = Counter(
            "journey_triggers_total",
            "Triggers raised, by trigger type and the contact policy's decision",
            ["trigger", "decision"],
            registry=r,
        )
        self.timers_pending = Gauge(
            "journey_timers_pending",
            "Timers scheduled and not yet fired in the partitions this worker owns",
            registry=r,
        )
        self.timers_fired = Counter(
            "journey_timers_fired_total",
            "Timers fired, by timer kind",
            ["kind"],
            registry=r,
        )
        self.timers_ignored = Counter(
            "journey_timers_ignored_total",
            "Fired timers that no longer applied to the customer, by reason",
            ["reason"],
            registry=r,
        )
        self.timer_lag = Histogram(
            "journey_timer_fire_lag_seconds",
            "How long after its due time a timer fired",
            buckets=TIMER_LAG_BUCKETS,
            registry=r,
        )
        # ------------------------------------------------------------ Kafka and the table
        self.consumer_lag = Gauge(
            "journey_consumer_lag_records",
            "Records between the committed position and the end of a partition",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "journey_assigned_partitions",
            "Partitions of the customers table this worker owns",
            registry=r,
        )
        self.table_size = Gauge(
            "journey_table_keys",
            "Keys in the table partitions this worker owns",
            ["table"],
            registry=r,
        )
        self.rebalances = Counter(
            "journey_rebalances_total",
            "Consumer group rebalances this worker took part in",
            registry=r,
        )
        # ------------------------------------------------------------ Redis profile store
        self.redis_errors = Counter(
            "journey_redis_errors_total",
            "Failed Redis profile writes, by kind of error",
            ["kind"],
            registry=r,
        )
        self.redis_pending = Gauge(
            "journey_redis_pending_profiles",
            "Changed customer profiles not yet written to Redis (the projection gap)",
            registry=r,
        )
        self.redis_dropped = Counter(
            "journey_redis_dropped_profiles_total",
            "Profile updates not kept because the pending buffer was full",
            registry=r,
        )
        self.redis_written = Counter(
            "journey_redis_written_profiles_total",
            "Customer profiles written to Redis",
            registry=r,
        )
        self.redis_flush = Histogram(
            "journey_redis_flush_seconds",
            "Duration of one pipelined batch of Redis profile writes",
            buckets=REDIS_FLUSH_BUCKETS,
            registry=r,
        )
        self._lag_labels: set[tuple[str, str]] = set()
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    # ---------------------------------------------------------------- helpers

    def observe_event_latency(self, event_at: datetime, processed_at: datetime) -> None:
        """Event time to processed; a clock skew that puts the event in the future is 0."""
        self.event_latency.observe(max(0.0, (processed_at - event_at).total_seconds()))

    def observe_stage_changes(self, changes: Iterable[StageChanged]) -> None:
        """Time in the stage a customer left. Transitions are counted by the processor."""
        for change in changes:
            if change.from_stage is not None and change.time_in_previous_s is not None:
                self.time_in_stage.labels(change.model, change.from_stage).observe(
                    change.time_in_previous_s
                )

    def set_consumer_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Lag of exactly the partitions given (``{(topic, partition): records}``).

        Partitions set before and missing now (revoked) lose their series, so the lag
        summed over the workers never counts a partition twice.
        """
        wanted = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for labels in self._lag_labels - wanted.keys():
            self.consumer_lag.remove(*labels)
        for labels, lag in wanted.items():
            self.consumer_lag.labels(*labels).set(max(0, lag))
        self._lag_labels = set(wanted)

    def count_triggers(self, decisions: Mapping[tuple[str, str], int]) -> None:
        """``{(trigger type, policy decision): n}`` for one batch."""
        for (trigger, decision), n in decisions.items():
            self.triggers.labels(trigger, decision).inc(n)


StageKey = tuple[str, str]
"""(model name, stage)"""


def stage_counts(states: Iterable[CustomerState]) -> Tally[StageKey]:
    """Customers per (model, stage) among ``states`` (customers with no stage are left out)."""
    counts: Tally[StageKey] = Tally()
    for state in states:
        if state.stage is not None:
            counts[state.model, state.stage] += 1
    return counts


class StageGauge:
    """``journey_customers`` kept incrementally, per partition.

    Stage changes move one customer (-1 from, +1 to) in the partition that owns the
    customer. When a partition is assigned, its counts (from the recovered table
    partition, see :func:`stage_counts`) are added; when it is revoked, whatever
    this worker counted for it is taken off. So the gauge covers exactly the
    partitions the worker owns, and summed over the workers of a group it equals the
    number of customers per stage.
    """

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._partitions: dict[int, Tally[StageKey]] = {}
        self._totals: Tally[StageKey] = Tally()

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._partitions)

    def totals(self) -> dict[StageKey, int]:
        """The current gauge values (zero entries left out)."""
        return {k: v for k, v in self._totals.items() if v}

    def apply(self, partition: int, changes: Iterable[StageChanged]) -> None:
        """Stage changes of customers owned by ``partition``.

        A partition not (yet) assigned is counted from its first change on; its
        counts are replaced by :meth:`assign` when the worker gets it.
        """
        counts = self._partitions.setdefault(partition, Tally())
        delta: Tally[StageKey] = Tally()
        for change in changes:
            if change.from_stage is not None:
                delta[change.model, change.from_stage] -= 1
            delta[change.model, change.to_stage] += 1
        for key, n in delta.items():
            if n:
                counts[key] += n
                self._add(key, n)

    def assign(self, partition: int, counts: Mapping[StageKey, int]) -> None:
        """Set a partition's counts (customers per stage in its recovered table)."""
        self.revoke(partition)
        own: Tally[StageKey] = Tally()
        for key, n in counts.items():
            if n:
                own[key] = n
                self._add(key, n)
        self._partitions[partition] = own

    def revoke(self, partition: int) -> None:
        """Take a partition's counts off (it moved to another worker)."""
        own = self._partitions.pop(partition, None)
        if own is None:
            return
        for key, n in own.items():
            if n:
                self._add(key, -n)

    def revoke_all(self) -> None:
        for partition in list(self._partitions):
            self.revoke(partition)

    def _add(self, key: StageKey, n: int) -> None:
        self._totals[key] += n
        self._gauge.labels(*key).set(self._totals[key])


def processed_events(scrape: str) -> int:
    """Touchpoints a worker is done with, from the text of its ``/metrics`` page:
    ``journey_events_total`` over every outcome except ``rekeyed`` (a re-keyed record
    is counted again when its re-published copy is applied)."""
    total = 0.0
    for family in text_string_to_metric_families(scrape):
        if family.name != "journey_events":
            continue
        for sample in family.samples:
            if sample.name == "journey_events_total" and sample.labels.get("outcome") != "rekeyed":
                total += sample.value
    return int(total)


def scrape(url: str, timeout: float = 5.0) -> str:
    """The text of a ``/metrics`` page (blocking; run it in a thread from async code)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8")
