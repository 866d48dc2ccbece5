"""The stored customer record under the saas preset: round trips, the on-disk format, bad input."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.journey import (
    CustomerState,
    Duplicate,
    Event,
    EventType,
    StageMachine,
    StateError,
    load_preset,
)
from engine.journey.state import Move as HistoryMove
from tests.unit.journeys import CUSTOMER, at, ev, replay

MACHINE = StageMachine(load_preset("saas"))


def rich_state() -> CustomerState:
    state, _ = replay(
        MACHINE,
        [
            ev("page", 0, channel="browser"),
            ev("Trial Started", 1),
            ev("Order Completed", 3, 12),
            ev("Signed In", 3, 13, channel="mobile"),
            ev("Feature Used", 4, channel="mobile"),
            ev("Payment Failed", 2, channel="server"),
        ],  # one late event
    )
    assert len(state.history) == 4
    assert len(state.recent_ids) == 4  # ids seen more than 24 h before the last are gone
    assert state.late_events == 1
    assert state.active_days_in_stage == 2
    return state


def test_state_round_trips_through_a_dict() -> None:
    state = rich_state()
    assert CustomerState.from_dict(state.to_dict()) == state
    assert CustomerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    fresh = MACHINE.new_state("c2")
    assert CustomerState.from_dict(fresh.to_dict()) == fresh


def test_restored_state_keeps_deduping_and_counting() -> None:
    state = rich_state()
    restored = CustomerState.from_dict(json.loads(json.dumps(state.to_dict())))
    last_id = "again"
    a, _ = MACHINE.apply(state, ev("Feature Used", 5, mid=last_id), at(5))
    b, _ = MACHINE.apply(restored, ev("Feature Used", 5, mid=last_id), at(5))
    assert a == b
    assert b.stage == "usage"  # third active day in onboarding
    _, effects = MACHINE.apply(b, ev("Feature Used", 5, mid=last_id), at(5, 1))
    assert effects == [Duplicate(CUSTOMER, last_id)]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2004, 3, 15, 7, 55, 47, 472000, tzinfo=UTC),
        datetime(2039, 1, 1, 0, 33, 19, 982000, tzinfo=UTC),
    ],
    ids=["2004", "2039"],
)
def test_millisecond_times_round_trip(when: datetime) -> None:
    event = Event("m", CUSTOMER, EventType.PAGE, when)
    state, _ = MACHINE.apply(None, event, when)
    restored = CustomerState.from_dict(state.to_dict())
    assert restored.last_seen == when
    assert restored == state


# A stored record written out by hand: the on-disk format must not drift silently.
RECORD: dict[str, Any] = {
    "v": 1,
    "id": "c1",
    "m": "saas",
    "mv": 1,
    "s": "evaluation",
    "se": 1717462800000,  # 2024-06-04T01:00Z
    "h": [
        [None, "discovery", 1717372800000, "first_visit", "m-a"],
        ["discovery", "evaluation", 1717462800000, "signed_up", "m-b"],
    ],
    "vi": {"discovery": 1, "evaluation": 1},
    "fs": 1717372800000,  # 2024-06-03T00:00Z
    "ls": 1717462800000,
    "t": {"browser": 2},
    "n": 2,
    "ln": 0,
    "ad": 0,
    "la": 0,
    "r": [[123, 1717462800000]],
}


def test_a_stored_record_loads_and_writes_back_unchanged() -> None:
    state = CustomerState.from_dict(RECORD)
    assert state == CustomerState(
        customer_id="c1",
        model="saas",
        model_version=1,
        stage="evaluation",
        stage_entered_at=at(1, 1),
        history=(
            HistoryMove(None, "discovery", at(0), "first_visit", "m-a"),
            HistoryMove("discovery", "evaluation", at(1, 1), "signed_up", "m-b"),
        ),
        visits={"discovery": 1, "evaluation": 1},
        first_seen=at(0),
        last_seen=at(1, 1),
        touches={"browser": 2},
        events=2,
        recent_ids=((123, 1717462800000),),
    )
    assert state.to_dict() == RECORD


_DROP = object()


def _record(**changes: Any) -> dict[str, Any]:
    """``RECORD`` with keys replaced, or dropped with ``_DROP``."""
    raw = copy.deepcopy(RECORD)
    for key, value in changes.items():
        if value is _DROP:
            del raw[key]
        else:
            raw[key] = value
    return raw


BROKEN: list[Any] = [
    pytest.param(_record(v=2), r"unsupported state record version 2", id="version-2"),
    pytest.param(_record(v=_DROP), r"unsupported state record version None", id="no-version"),
    pytest.param(
        _record(id=_DROP), r"malformed customer state record: KeyError\('id'\)", id="no-id"
    ),
    pytest.param(_record(h=_DROP), r"malformed.*KeyError\('h'\)", id="no-history"),
    pytest.param(_record(mv="one"), r"malformed", id="version-not-int"),
    pytest.param(_record(se="yesterday"), r"malformed", id="entered-not-a-number"),
    pytest.param(
        _record(h=[["discovery", "evaluation"]]), r"malformed.*IndexError", id="short-history-entry"
    ),
    pytest.param(_record(h=5), r"malformed.*TypeError", id="history-not-a-list"),
    pytest.param(_record(t={"browser": "many"}), r"malformed.*ValueError", id="touch-not-int"),
    pytest.param(_record(r=[[1, 2, 3]]), r"malformed.*ValueError", id="recent-id-triple"),
    pytest.param(_record(n=None), r"malformed.*TypeError", id="events-null"),
    pytest.param({}, r"unsupported state record version None", id="empty"),
]


@pytest.mark.parametrize(("raw", "match"), BROKEN)
def test_from_dict_of_a_broken_record_raises_state_error(raw: Any, match: str) -> None:
    with pytest.raises(StateError, match=match):
        CustomerState.from_dict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(["v", 1], id="record-is-a-list"),
        pytest.param(None, id="record-is-null"),
        pytest.param(_record(vi=[["usage", 1]]), id="visits-a-list"),
        pytest.param(_record(t="browser"), id="touches-a-string"),
        pytest.param(_record(ls=10**20), id="time-out-of-range"),
    ],
)
def test_from_dict_of_a_badly_typed_record_raises_state_error(raw: Any) -> None:
    with pytest.raises(StateError, match=r"malformed"):
        CustomerState.from_dict(raw)
