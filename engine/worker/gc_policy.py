"""The worker's garbage-collector policy: what survives a collection is frozen.

A worker holds hundreds of thousands of long-lived objects (the decoded customer
records of the state cache, the timer indexes), and nearly every container it
allocates either dies by reference counting within the batch or lives on in that
state. CPython's generations then only move the live state from one generation
to the next, walking it again at each step while it holds the event loop: with
live traffic at 7,000 touchpoints/s, each middle-generation collection walked
about 40,000 such objects for 41-71 ms every 7 s, and a full one 60-110 ms with
100,000 cached customers on 2 cores, the largest stalls in the latency tail.

After every collection, young or full, this policy freezes the survivors
(``gc.freeze``, which costs nothing: they move to the permanent generation, which
collections skip), so each object is walked once, by the first young collection
that finds it alive, and the older generations stay empty. Measured on the same
live traffic: the longest collection went from 73 ms to 15-20 ms and the
collector's time down by a third.

A frozen object is still freed by reference counting when its last reference
goes (customer records hold no reference cycles), and a cycle that becomes
garbage before the next young collection is collected by it. Only a cycle whose
objects were frozen before it became garbage waits: about a hundred objects in
30 s of that traffic. Every ``unfreeze_every`` full collections everything is
unfrozen, so the full pass that follows walks it all once (0.3 s for the 235,000
objects of a worker after those 30 s) and collects such cycles. Full collections
come seldom once the older generations stay empty (none in those 30 s after the
one at start-up), so that pass is rare.

The youngest generation is collected every ``young_threshold`` net allocations of
container objects (CPython's default is 700). A worker allocates a few hundred
short-lived containers per touchpoint, and at 700 it ran a young collection about
every two milliseconds of work, each walking the survivors of the batch being
applied: at 10,000 most of them are freed by reference counting before a
collection sees them (collector time measured at a third of the default's on live
traffic), for pauses of 5-20 ms.
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
        if phase != "stop":
            return
        if info.get("generation") == 2:
            self.full_collections += 1
            if self.full_collections % self.unfreeze_every == 0:
                gc.unfreeze()
                return
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
