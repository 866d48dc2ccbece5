"""Every Prometheus metric of the engine, declared once against a registry passed in."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families


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
