"""The worker's collector policy: survivors of every collection are frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine.settings import Settings, SettingsError
from engine.worker import gc_policy


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def clean_gc() -> Iterator[None]:
    """Nothing frozen, and only the test's own collections run."""
    gc.collect()
    gc.unfreeze()
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()
    gc.unfreeze()


def test_a_full_collection_freezes_its_survivors(clean_gc: None) -> None:
    policy = gc_policy.install(50)
    try:
        kept = [_Node() for _ in range(1000)]
        assert gc.get_freeze_count() == 0
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)
        # A young collection freezes its survivors too.
        more = [_Node() for _ in range(100)]
        gc.collect(0)
        assert gc.get_freeze_count() >= frozen + len(more)
        del more, kept
    finally:
        gc_policy.uninstall(policy)
    assert gc.get_freeze_count() == 0
    assert policy not in gc.callbacks


def test_a_cycle_that_dies_before_a_young_collection_is_collected_by_it(
    clean_gc: None,
) -> None:
    policy = gc_policy.install(50)
    try:
        gc.collect()  # what exists now is frozen
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        gc.collect(0)
        assert alive() is None
    finally:
        gc_policy.uninstall(policy)


def test_every_nth_full_collection_unfreezes_so_frozen_cycles_are_collected(
    clean_gc: None,
) -> None:
    policy = gc_policy.install(3)
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gc.collect()  # 1: frozen, the cycle with them
        assert gc.get_freeze_count() > 0
        alive = weakref.ref(a)
        del a, b
        gc.collect()  # 2: a frozen cycle is not collected...
        assert alive() is not None
        gc.collect()  # 3: unfreezes
        assert gc.get_freeze_count() == 0
        assert alive() is not None
        gc.collect()  # ...until the full pass after an unfreeze
        assert alive() is None
    finally:
        gc_policy.uninstall(policy)


def test_zero_keeps_the_default_policy(clean_gc: None) -> None:
    assert gc_policy.install(0) is None
    gc.collect()
    assert gc.get_freeze_count() == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unfreeze_every"):
        gc_policy.FreezeSurvivors(0)
    with pytest.raises(SettingsError, match="JOURNEY_GC_UNFREEZE_EVERY"):
        Settings.from_env({"JOURNEY_GC_UNFREEZE_EVERY": "-1"})
    assert Settings.from_env({"JOURNEY_GC_UNFREEZE_EVERY": "7"}).gc_unfreeze_every == 7


def test_the_young_generation_threshold_is_set_and_the_older_ones_kept() -> None:
    before = gc.get_threshold()
    try:
        assert gc_policy.install(0, 12_345) is None  # no freezing asked
        assert gc.get_threshold() == (12_345, *before[1:])
        gc_policy.install(0, 0)
        assert gc.get_threshold() == (12_345, *before[1:])  # 0 leaves it as it is
        with pytest.raises(ValueError, match="young_threshold"):
            gc_policy.install(0, -1)
    finally:
        gc.set_threshold(*before)


def test_the_young_threshold_setting_is_checked() -> None:
    with pytest.raises(SettingsError, match="JOURNEY_GC_YOUNG_THRESHOLD"):
        Settings.from_env({"JOURNEY_GC_YOUNG_THRESHOLD": "-5"})
    assert Settings.from_env({"JOURNEY_GC_YOUNG_THRESHOLD": "0"}).gc_young_threshold == 0
