"""The trigger memory in the stored customer record: round trips, size, bad records."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from engine.journey import CustomerState, Outcome, StateError, TriggerMemory, TriggerType
from engine.journey.trigger_state import (
    DECIDED_OUTCOMES,
    Held,
    keep_decided,
    pack_decided,
    trigger_digest,
    with_decided,
)
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
    why=("trial_stalled", 0, "payment_failed", 1),
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
        "w": ["trial_stalled", 0, "payment_failed", 1],
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
    assert [(d.rule, d.outcome) for d in MEMORY.decisions()] == [
        ("trial_stalled", "sent"),
        ("payment_failed", "capped"),
    ]


def test_remembered_outcomes_are_those_of_the_policy_but_held_and_duplicate() -> None:
    assert set(DECIDED_OUTCOMES) == {o.value for o in Outcome} - {"held", "duplicate"}
    assert DECIDED_OUTCOMES[0] == "sent"  # an entry of an older record that was sent


def test_a_record_from_before_rules_and_outcomes_were_kept_still_loads() -> None:
    old = {k: v for k, v in MEMORY.to_dict().items() if k != "w"}
    memory = TriggerMemory.from_dict(old)
    assert memory.decided == MEMORY.decided
    assert memory.why == (None, None, None, None)  # aligned with ``decided``
    assert [(d.rule, d.outcome, d.sent) for d in memory.decisions()] == [
        (None, "sent", True),
        (None, "not_sent", False),
    ]
    assert [d.digest for d in memory.decisions()] == [d.digest for d in MEMORY.decisions()]
    # Written back, it says the same: null rule and outcome.
    assert memory.to_dict()["w"] == [None, None, None, None]
    assert TriggerMemory.from_dict(memory.to_dict()) == memory


def test_rebuilt_memories_keep_decided_and_why_together() -> None:
    changed = keep_decided(MEMORY, 5, (), (), None, False)
    assert (changed.decided, changed.why) == (MEMORY.decided, MEMORY.why)
    assert (changed.active_at, changed.fired, changed.held, changed.timezone) == (5, (), (), None)
    redecided = with_decided(MEMORY, MEMORY.decided[2:], MEMORY.why[2:])
    assert replace(MEMORY, decided=MEMORY.decided[2:], why=MEMORY.why[2:]) == redecided


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
        pytest.param({"d": [1, 2], "w": "r"}, id="why-not-a-list"),
        pytest.param({"d": [1, 2], "w": ["r"]}, id="why-short"),
        pytest.param({"d": [1, 2], "w": ["r", 0, "s", 0]}, id="why-longer-than-decided"),
        pytest.param({"w": ["r", 0]}, id="why-without-decided"),
        pytest.param({"d": [1, 2], "w": [7, 0]}, id="why-rule-not-a-string"),
        pytest.param({"d": [1, 2], "w": ["r", 5]}, id="why-outcome-out-of-range"),
        pytest.param({"d": [1, 2], "w": ["r", -1]}, id="why-outcome-negative"),
        pytest.param({"d": [1, 2], "w": ["r", "sent"]}, id="why-outcome-a-name"),
        pytest.param({"d": [1, 2], "w": ["r", True]}, id="why-outcome-a-boolean"),
        pytest.param({"f": [["r"]]}, id="fired-short"),
        pytest.param({"h": [["id", "r", 9, 1, None, 0, "event:x", 1]]}, id="held-bad-type"),
        pytest.param({"h": [["id"]]}, id="held-short"),
    ],
)
def test_a_broken_trigger_memory_is_a_state_error(tr: Any) -> None:
    with pytest.raises(StateError, match="malformed trigger memory"):
        CustomerState.from_dict(_with(tr))


def test_a_broken_why_says_what_is_wrong() -> None:
    with pytest.raises(StateError, match=r"a rule and an outcome per decided trigger \(1 in 'd'\)"):
        TriggerMemory.from_dict({"d": [1, 2], "w": ["r"]})
    with pytest.raises(StateError, match=r"outcome 5 is not an index of \['sent', 'capped'"):
        TriggerMemory.from_dict({"d": [1, 2], "w": ["r", 5]})
