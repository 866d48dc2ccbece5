"""The trigger memory in the stored customer record: round trips, size, bad records."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from engine.journey import CustomerState, StateError, TriggerMemory, TriggerType
from engine.journey.trigger_state import Held, pack_decided, trigger_digest
from tests.unit.test_state_record import RECORD

MEMORY = TriggerMemory(
    active_at=1_717_462_800_000,
    fired=(("trial_stalled", 1_718_067_600_000),),
    decided=(
        1_718_067_600,
        pack_decided(trigger_digest("ab" * 16), True, TriggerType.NURTURE, 30),
        1_718_070_000,
        pack_decided(trigger_digest("cd" * 16), False, TriggerType.CHURN_RISK, 95),
    ),
    held=(
        Held(
            "ef" * 16,
            "payment_failed",
            TriggerType.CHURN_RISK,
            95,
            "at_risk",
            1_718_070_000_000,
            "event:m-7",
            1_718_092_800_000,
        ),
    ),
    timezone="Europe/Paris",
    unsubscribed=True,
)


def test_trigger_memory_round_trips_inside_the_record() -> None:
    state = replace(CustomerState.from_dict(RECORD), triggers=MEMORY)
    raw = json.loads(json.dumps(state.to_dict()))
    assert raw["tr"] == {
        "a": 1_717_462_800_000,
        "f": [["trial_stalled", 1_718_067_600_000]],
        "d": list(MEMORY.decided),
        "h": [
            [
                "ef" * 16,
                "payment_failed",
                1,
                95,
                "at_risk",
                1_718_070_000_000,
                "event:m-7",
                1_718_092_800_000,
            ]
        ],
        "z": "Europe/Paris",
        "u": 1,
    }
    assert CustomerState.from_dict(raw) == state
    assert max(raw["tr"]["d"]) < 2**53  # exact in any JSON reader


def test_decided_entries_unpack() -> None:
    first, second = MEMORY.decisions()
    assert (first.at_s, first.sent, first.type_index, first.priority) == (
        1_718_067_600,
        True,
        0,
        30,
    )
    assert first.digest == trigger_digest("ab" * 16)
    assert (second.sent, second.type_index, second.priority) == (False, 1, 95)


def test_empty_memory_is_an_empty_object_and_a_record_without_it_has_no_key() -> None:
    assert TriggerMemory().to_dict() == {}
    assert TriggerMemory.from_dict({}) == TriggerMemory()
    assert "tr" not in CustomerState.from_dict(RECORD).to_dict()


def _with(tr: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RECORD)
    raw["tr"] = tr
    return raw


@pytest.mark.parametrize(
    "tr",
    [
        pytest.param([1, 2], id="not-an-object"),
        pytest.param({"a": "yesterday"}, id="active-not-a-number"),
        pytest.param({"d": [1, 2, 3]}, id="decided-not-pairs"),
        pytest.param({"f": [["r"]]}, id="fired-short"),
        pytest.param({"h": [["id", "r", 9, 1, None, 0, "event:x", 1]]}, id="held-bad-type"),
        pytest.param({"h": [["id"]]}, id="held-short"),
    ],
)
def test_a_broken_trigger_memory_is_a_state_error(tr: Any) -> None:
    with pytest.raises(StateError, match="malformed trigger memory"):
        CustomerState.from_dict(_with(tr))
