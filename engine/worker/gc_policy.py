"""The worker's garbage-collector policy: what survived a full collection is frozen.

A worker holds hundreds of thousands of long-lived objects (the decoded customer
records of the state cache, the timer indexes). CPython's full collection
(generation 2) walks every tracked object while it holds the event loop: 60-110 ms
with 100,000 cached customers on 2 cores, the largest stalls in the latency tail.
After each full collection this policy freezes the survivors (``gc.freeze``: they
move to the permanent generation, which collections skip), so the next full pass
walks only what was created since.

A frozen object is still freed by reference counting when its last reference
goes (customer records hold no reference cycles). Only a reference cycle that
became garbage after it was frozen waits: every ``unfreeze_every`` full
collections everything is unfrozen, so the full pass that follows walks it all
once and collects such cycles.

The youngest generation is collected every ``young_threshold`` net allocations of
container objects (CPython's default is 700). A worker allocates a few hundred
short-lived containers per touchpoint, and at 700 it ran a young collection about
every two milliseconds of work, each walking the survivors of the batch being
applied: at 10,000 most of them are freed by reference counting before a
collection sees them (collector time measured at a third of the default's on live
traffic), for pauses of a few milliseconds.
"""

from __future__ import annotations

import gc
from typing import Any


class FreezeSurvivors:
    """A ``gc.callbacks`` entry; see the module documentation."""

    def __init__(self, unfreeze_every: int) -> None:
        if unfreeze_every < 1:
            raise ValueError("unfreeze_every must be >= 1")
        self.unfreeze_every = unfreeze_every
        self.full_collections = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # "stop" comes after the collection is complete: the lists are consistent.
        if phase != "stop" or info.get("generation") != 2:
            return
        self.full_collections += 1
        if self.full_collections % self.unfreeze_every == 0:
            gc.unfreeze()
        else:
            gc.freeze()


def install(unfreeze_every: int, young_threshold: int = 0) -> FreezeSurvivors | None:
    """Apply the policy to this process; ``unfreeze_every`` 0 leaves CPython's own,
    ``young_threshold`` 0 its threshold of the youngest generation. Returns the
    callback (for :func:`uninstall`), None when nothing was installed."""
    if young_threshold < 0:
        raise ValueError("young_threshold must be >= 0")
    if young_threshold:
        gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
    if unfreeze_every == 0:
        return None
    policy = FreezeSurvivors(unfreeze_every)
    gc.callbacks.append(policy)
    return policy


def uninstall(policy: FreezeSurvivors | None) -> None:
    """Remove the policy and unfreeze what it froze."""
    if policy is not None and policy in gc.callbacks:
        gc.callbacks.remove(policy)
        gc.unfreeze()
