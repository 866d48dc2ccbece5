"""Generated constructors and replace: the same objects as the dataclass's own."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError, dataclass, field, replace
from datetime import UTC, datetime

import pytest

from engine.journey import CustomerState, Event, EventType, StageChanged
from engine.journey.slotted import constructor, replacer
from engine.journey.state import Move

AT = datetime(2024, 6, 3, tzinfo=UTC)
STATE = CustomerState(
    "c1",
    "saas",
    1,
    stage="usage",
    stage_entered_at=AT,
    history=(Move(None, "usage", AT, "r", "m1"),),
    visits={"usage": 1},
    first_seen=AT,
    last_seen=AT,
    touches={"browser": 3},
    events=3,
    late_events=1,
    active_days_in_stage=2,
    last_active_day=AT.toordinal(),
    recent_ids=((1, 2),),
)


def test_replacer_equals_dataclasses_replace() -> None:
    set_stage_events = replacer(CustomerState, "stage", "events")
    got = set_stage_events(STATE, "churned", 4)
    assert got == replace(STATE, stage="churned", events=4)
    assert type(got) is CustomerState
    assert got.history is STATE.history  # unchanged fields are shared, as with replace
    assert STATE.stage == "usage"  # the original is left alone
    with pytest.raises(AttributeError):
        got.stage = "x"  # type: ignore[misc]  # still frozen


def test_every_field_can_be_replaced() -> None:
    names = [n for n in CustomerState.__dataclass_fields__]
    values = [getattr(STATE, n) for n in names]
    assert replacer(CustomerState, *names)(STATE, *values) == STATE


@dataclass(frozen=True, slots=True)
class Grown:
    a: int
    b: str = "b"
    added: tuple[int, ...] = ()
    seen: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seen.append(self.a)


def test_fields_not_named_are_carried_over_and_post_init_runs() -> None:
    old = Grown(1, "x", (7, 8))
    new = replacer(Grown, "a")(old, 2)
    assert new == replace(Grown(1, "x", (7, 8)), a=2)
    assert new.added == (7, 8)
    assert old.seen == [1, 2]  # __post_init__ ran on the copy (the list is shared)


@dataclass(frozen=True)
class NoSlots:
    a: int


@dataclass(frozen=True, slots=True)
class Derived:
    a: int
    b: int = field(init=False, default=0)
    c: list[int] = field(init=False, default_factory=list)
    d: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "d", self.a * 2)


@dataclass(frozen=True, slots=True)
class Base:
    a: int


@dataclass(frozen=True, slots=True)
class Sub(Base):
    b: int


def test_constructor_equals_the_class_called_with_every_field() -> None:
    values = ("m", "c", EventType.TRACK, AT, "n", "web", {"a": 1}, {}, "u", None, None)
    made = constructor(Event)(*values)
    assert made == Event(*values)
    assert type(made) is Event
    assert made.label == "n"
    change = (
        ("c", None, "usage", AT, "saas", 1, "r", "m", "e", 2, None, True),
        ("c", "a", "b", AT, "saas", 1, "r", "m", "e", 1, 3.5, False),
    )
    for fields in change:
        assert constructor(StageChanged)(*fields) == StageChanged(*fields)
    assert constructor(Grown)(1, "x", (), []).seen == [1]  # __post_init__ ran


CHANGE = ("c", None, "usage", AT, "saas", 1, "r", "m", "e", 2, None, True)


def test_made_objects_are_ordinary_frozen_instances() -> None:
    made, plain = constructor(StageChanged)(*CHANGE), StageChanged(*CHANGE)
    assert type(made) is StageChanged
    assert hash(made) == hash(plain)
    assert repr(made) == repr(plain)
    assert pickle.loads(pickle.dumps(made)) == plain
    with pytest.raises(FrozenInstanceError):
        made.visit = 3  # type: ignore[misc]
    for obj in (made, plain):  # no new attributes either (the error is Python's own)
        with pytest.raises((AttributeError, TypeError)):
            obj.extra = 1  # type: ignore[attr-defined]
    copied = replacer(StageChanged, "visit")(made, 3)
    assert copied == replace(plain, visit=3)
    assert hash(copied) == hash(replace(plain, visit=3))


def test_constructor_takes_the_arguments_and_defaults_of_the_class() -> None:
    make = constructor(CustomerState)
    assert make("c", "saas", 1) == CustomerState("c", "saas", 1)
    assert make("c", "saas", 1, events=3) == CustomerState("c", "saas", 1, events=3)
    assert make(model="m", model_version=2, customer_id="c") == CustomerState("c", "m", 2)
    first, second = make("c", "saas", 1), make("c", "saas", 1)
    assert first.visits == {}
    assert first.visits is not second.visits  # a fresh dict each
    assert constructor(StageChanged)(*CHANGE[:-1]) == StageChanged(*CHANGE[:-1])  # late=False
    with pytest.raises(TypeError, match="missing"):
        constructor(StageChanged)("c", None, "usage")


def test_fields_outside_init_get_their_default_or_what_post_init_sets() -> None:
    made = constructor(Derived)(3)
    assert (made.a, made.b, made.c, made.d) == (3, 0, [], 6)
    assert made.c is not constructor(Derived)(3).c
    copied = replacer(Derived, "a")(made, 5)
    assert (copied.a, copied.b, copied.d) == (5, 0, 10)  # as dataclasses.replace does
    at = AT.replace(microsecond=123456)
    move = constructor(Move)(None, "usage", at, "r", "m")
    assert move == Move(None, "usage", at, "r", "m")
    assert move.at_ms == Move(None, "usage", at, "r", "m").at_ms


def test_unsuitable_classes_and_names_are_refused() -> None:
    with pytest.raises(TypeError, match="slotted"):
        replacer(NoSlots, "a")
    with pytest.raises(TypeError, match="no __init__ field"):
        replacer(Derived, "b")
    with pytest.raises(TypeError, match="slotted"):
        constructor(NoSlots)
    with pytest.raises(TypeError, match="based on object"):
        constructor(Sub)
    with pytest.raises(TypeError, match="no __init__ field"):
        replacer(CustomerState, "stage", "nope")
    with pytest.raises(TypeError, match="cannot generate"):
        replacer(CustomerState, "stage", "stage")
