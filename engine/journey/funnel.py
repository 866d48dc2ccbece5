"""Funnel analytics, kept incrementally from stage changes. Pure: no I/O, no clock.

Per lifecycle model and stage the :class:`Funnel` counts

* ``entries``: moves into the stage, and ``reached``: the first of them per
  customer (``visit == 1``), so the distinct customers who ever got there;
* ``exits_to``: moves out of the stage, by the stage moved to. On the model's path
  these split into *forward* (to a later path stage: converted), *backward*, and
  *off the path* (``at_risk``, ``churned``...: the drop-off);
* the time customers spent in the stage before leaving it, as a histogram;
* ``stalled``: customers sitting in the stage past its stall timer, a count the
  caller sets (it comes from the timers, not from stage changes).

Memory is fixed per (model, stage), whatever the number of customers, so a worker
can keep it live and funnels of several workers add up with :meth:`Funnel.merge`.
The JSON form (:meth:`Funnel.to_dict`) has the raw counts and what follows from
them (conversion per step, drop-off rates, time-in-stage quantiles);
:meth:`Funnel.from_dict` reads the raw counts back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.journey.effects import StageChanged
from engine.journey.model import LifecycleModel

FORMAT_VERSION = 1
_MIN, _HOUR, _DAY = 60.0, 3600.0, 86400.0
#: Upper bounds of the time-in-stage buckets, in seconds; one more bucket holds the rest.
TIME_BOUNDS_S: tuple[float, ...] = (
    _MIN, 10 * _MIN, _HOUR, 6 * _HOUR, _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY, 90 * _DAY,
)  # fmt: skip


class FunnelError(ValueError):
    """A funnel document that cannot be read."""


@dataclass(slots=True)
class StageTally:
    entries: int = 0
    reached: int = 0
    exits_to: Counter[str] = field(default_factory=Counter)
    time_counts: list[int] = field(default_factory=lambda: [0] * (len(TIME_BOUNDS_S) + 1))
    time_sum_ms: int = 0  # whole milliseconds: sums are exact in any order
    stalled: int = 0

    @property
    def exits(self) -> int:
        return sum(self.exits_to.values())

    def observe_time(self, seconds: float) -> None:
        index = len(TIME_BOUNDS_S)
        for i, bound in enumerate(TIME_BOUNDS_S):
            if seconds <= bound:
                index = i
                break
        self.time_counts[index] += 1
        self.time_sum_ms += round(seconds * 1000)

    def time_quantile(self, q: float) -> float | None:
        """Estimated like Prometheus' histogram_quantile: linear within a bucket."""
        total = sum(self.time_counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.time_counts):
            if n and seen + n >= rank:
                if i == len(TIME_BOUNDS_S):
                    return TIME_BOUNDS_S[-1]  # beyond the last bound: its lower edge
                low = 0.0 if i == 0 else TIME_BOUNDS_S[i - 1]
                return low + (TIME_BOUNDS_S[i] - low) * (rank - seen) / n
            seen += n
        return TIME_BOUNDS_S[-1]

    def add(self, other: StageTally) -> None:
        self.entries += other.entries
        self.reached += other.reached
        self.exits_to.update(other.exits_to)
        self.time_counts = [a + b for a, b in zip(self.time_counts, other.time_counts, strict=True)]
        self.time_sum_ms += other.time_sum_ms
        self.stalled += other.stalled


@dataclass(slots=True)
class ModelFunnel:
    """The funnel of one lifecycle model (all its versions)."""

    model: str
    path: tuple[str, ...] = ()
    stage_order: tuple[str, ...] = ()  # every stage of the model, when it is known
    versions: set[int] = field(default_factory=set)
    changes: int = 0
    late: int = 0
    tallies: dict[str, StageTally] = field(default_factory=dict)

    def tally(self, stage: str) -> StageTally:
        found = self.tallies.get(stage)
        if found is None:
            found = self.tallies[stage] = StageTally()
        return found

    def add(self, change: StageChanged) -> None:
        self.changes += 1
        self.late += change.late
        self.versions.add(change.model_version)
        into = self.tally(change.to_stage)
        into.entries += 1
        if change.visit == 1:
            into.reached += 1
        if change.from_stage is not None:
            left = self.tally(change.from_stage)
            left.exits_to[change.to_stage] += 1
            if change.time_in_previous_s is not None:
                left.observe_time(change.time_in_previous_s)

    def stages(self) -> list[str]:
        """Path stages first, then the model's other stages, then any others seen."""
        order = list(self.path)
        for stage in (*self.stage_order, *self.tallies):
            if stage not in order:
                order.append(stage)
        return order

    def rank(self, stage: str) -> int | None:
        return self.path.index(stage) if stage in self.path else None

    def to_dict(self) -> dict[str, Any]:
        stages = [self._stage_dict(stage) for stage in self.stages()]
        steps = []
        for a, b in zip(self.path, self.path[1:], strict=False):
            t = self.tallies.get(a, StageTally())
            steps.append(
                {
                    "from": a,
                    "to": b,
                    "entries": t.entries,
                    "moved_on": self._forward(a, t),
                    "direct": t.exits_to.get(b, 0),
                    "conversion": _ratio(self._forward(a, t), t.entries),
                    "direct_conversion": _ratio(t.exits_to.get(b, 0), t.entries),
                }
            )
        return {
            "model": self.model,
            "versions": sorted(self.versions),
            "path": list(self.path),
            "changes": self.changes,
            "late": self.late,
            "stages": stages,
            "steps": steps,
        }

    def _moves(self, stage: str, t: StageTally, forward: bool) -> int:
        """Exits along the path, forward (to a later path stage) or backward."""
        here = self.rank(stage)
        if here is None:
            return 0
        total = 0
        for to, n in t.exits_to.items():
            there = self.rank(to)
            if there is not None and (there > here if forward else there < here):
                total += n
        return total

    def _forward(self, stage: str, t: StageTally) -> int:
        return self._moves(stage, t, forward=True)

    def _stage_dict(self, stage: str) -> dict[str, Any]:
        t = self.tallies.get(stage, StageTally())
        here = self.rank(stage)
        off_path = {to: n for to, n in t.exits_to.items() if self.rank(to) is None}
        backward = self._moves(stage, t, forward=False)
        forward = self._forward(stage, t)
        count = sum(t.time_counts)
        last = here is not None and here == len(self.path) - 1
        return {
            "stage": stage,
            "on_path": here is not None,
            "rank": here,
            "entries": t.entries,
            "reached": t.reached,
            "exits": t.exits,
            "in_stage": max(0, t.entries - t.exits),
            "exits_to": dict(sorted(t.exits_to.items())),
            "forward": forward,
            "backward": backward,
            "drop_off": dict(sorted(off_path.items())),
            "conversion": None if here is None or last else _ratio(forward, t.entries),
            "drop_off_rate": _ratio(sum(off_path.values()), t.entries),
            "stalled": t.stalled,
            "time_in_stage": {
                "bounds_s": list(TIME_BOUNDS_S),
                "counts": list(t.time_counts),
                "count": count,
                "sum_s": t.time_sum_ms / 1000,
                "mean_s": t.time_sum_ms / 1000 / count if count else None,
                "p50_s": t.time_quantile(0.5),
                "p90_s": t.time_quantile(0.9),
            },
        }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class Funnel:
    """Funnels of every model seen; ``models`` gives their paths and stage order."""

    def __init__(self, models: Iterable[LifecycleModel] = ()) -> None:
        self._shapes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            m.name: (m.path, tuple(m.stages)) for m in models
        }
        self.models: dict[str, ModelFunnel] = {}

    def model(self, name: str) -> ModelFunnel:
        found = self.models.get(name)
        if found is None:
            path, order = self._shapes.get(name, ((), ()))
            found = self.models[name] = ModelFunnel(name, path=path, stage_order=order)
        return found

    def add(self, change: StageChanged) -> None:
        self.model(change.model).add(change)

    def add_all(self, changes: Iterable[StageChanged]) -> None:
        for change in changes:
            self.add(change)

    def set_stalled(self, model: str, counts: Mapping[str, int]) -> None:
        """Customers stalled per stage right now (replaces the previous counts)."""
        funnel = self.model(model)
        for stage in set(funnel.tallies) | set(counts):
            funnel.tally(stage).stalled = counts.get(stage, 0)

    def merge(self, other: Funnel) -> None:
        """Add another funnel's counts (e.g. another worker's partitions)."""
        for name, theirs in other.models.items():
            ours = self.model(name)
            if not ours.path and theirs.path:
                ours.path, ours.stage_order = theirs.path, theirs.stage_order
            ours.versions |= theirs.versions
            ours.changes += theirs.changes
            ours.late += theirs.late
            for stage, tally in theirs.tallies.items():
                ours.tally(stage).add(tally)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "time_bounds_s": list(TIME_BOUNDS_S),
            "models": {name: self.models[name].to_dict() for name in sorted(self.models)},
        }

    @classmethod
    def from_dict(cls, raw: Any) -> Funnel:
        """Read a document written by :meth:`to_dict` (its raw counts)."""
        try:
            return cls._read(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FunnelError(f"not a funnel document: {exc!r}") from exc

    @classmethod
    def _read(cls, raw: Any) -> Funnel:
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
            raise FunnelError(f"not a funnel document of version {FORMAT_VERSION}")
        if [float(b) for b in raw["time_bounds_s"]] != list(TIME_BOUNDS_S):
            raise FunnelError("the document's time-in-stage buckets differ from this version's")
        funnel = cls()
        for name, m in raw["models"].items():
            path = tuple(str(s) for s in m["path"])
            stages = [s["stage"] for s in m["stages"]]
            mf = funnel.models[str(name)] = ModelFunnel(
                str(name), path=path, stage_order=tuple(stages)
            )
            mf.versions = {int(v) for v in m["versions"]}
            mf.changes, mf.late = int(m["changes"]), int(m["late"])
            for s in m["stages"]:
                counts = [int(n) for n in s["time_in_stage"]["counts"]]
                if len(counts) != len(TIME_BOUNDS_S) + 1:
                    raise FunnelError(f"{name}/{s['stage']}: wrong number of time buckets")
                sum_s = float(s["time_in_stage"]["sum_s"])
                if any(n < 0 for n in counts) or not math.isfinite(sum_s):
                    raise FunnelError(f"{name}/{s['stage']}: bad time-in-stage counts")
                mf.tallies[str(s["stage"])] = StageTally(
                    entries=int(s["entries"]),
                    reached=int(s["reached"]),
                    exits_to=Counter({str(k): int(v) for k, v in s["exits_to"].items()}),
                    time_counts=counts,
                    time_sum_ms=round(sum_s * 1000),
                    stalled=int(s["stalled"]),
                )
        return funnel
