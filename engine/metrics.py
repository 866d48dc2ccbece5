"""Every Prometheus metric of the engine, declared once against a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "journey_events_total",
            "Touchpoints consumed, by Segment call type and outcome",
            ["type", "outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "journey_dead_letters_total",
            "Records set aside on the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.transitions = Counter(
            "journey_stage_transitions_total",
            "Lifecycle stage transitions",
            ["model", "from_stage", "to_stage"],
            registry=registry,
        )
