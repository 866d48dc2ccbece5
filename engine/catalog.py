"""The topic catalog (``topics/catalog.json``): the one place topic names live."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine.journey.trigger_rules import TriggerType
from engine.settings import Settings

TOPICS_DIR = Path(
    os.environ.get("JOURNEY_TOPICS_DIR", Path(__file__).resolve().parents[1] / "topics")
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    key: str
    name: str
    direction: str
    description: str
    partitions: int
    copartitioned: bool
    config: dict[str, str]
    schema: str

    @property
    def schema_path(self) -> Path:
        return TOPICS_DIR / "schemas" / self.schema


@cache
def _raw_catalog() -> dict[str, Any]:
    path = TOPICS_DIR / "catalog.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuntimeError(
            f"topic catalog not found at {path}; set JOURNEY_TOPICS_DIR to the topics/ folder"
        ) from exc
    return data


def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TOPICS_DIR / "schemas" / name).read_text("utf-8"))
    return data


class Catalog:
    """Topic specs resolved against the settings (prefix, touchpoints name, partitions)."""

    TOUCHPOINTS = "touchpoints"
    REKEYED = "touchpoints_rekeyed"
    STAGE_CHANGES = "stage_changes"
    DEAD_LETTER = "dead_letter"
    TIMERS = "timers"
    DECISIONS = "decisions"

    def __init__(self, settings: Settings) -> None:
        self._specs: dict[str, TopicSpec] = {}
        for key, raw in _raw_catalog()["topics"].items():
            name = raw["name"]
            if key == self.TOUCHPOINTS and settings.touchpoints_topic:
                name = settings.touchpoints_topic
            else:
                name = settings.topic_prefix + name
            copart = bool(raw.get("copartitioned", False))
            self._specs[key] = TopicSpec(
                key=key,
                name=name,
                direction=raw["direction"],
                description=raw.get("description", ""),
                partitions=(
                    settings.partitions
                    if copart and settings.partitions
                    else int(raw["partitions"])
                ),
                copartitioned=copart,
                config={k: str(v) for k, v in raw.get("config", {}).items()},
                schema=raw["schema"],
            )

    def __getitem__(self, key: str) -> TopicSpec:
        return self._specs[key]

    def name(self, key: str) -> str:
        return self._specs[key].name

    def all(self) -> list[TopicSpec]:
        return list(self._specs.values())

    def triggers(self) -> list[TopicSpec]:
        return [s for k, s in self._specs.items() if k.startswith("trigger_")]

    def trigger_topic(self, kind: TriggerType) -> str:
        """The topic of one trigger type (``journey.triggers.churn-risk``, ...)."""
        return self.name("trigger_" + kind.value.replace("-", "_"))
