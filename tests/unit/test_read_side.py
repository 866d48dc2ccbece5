"""The read side's pure parts: stages read from raw table records, where a key lives,
and the API's documents. The worker serving them is tested in
tests/integration/test_worker_api.py and test_two_workers.py."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from jsonschema import Draft202012Validator

from engine.customer_docs import BadCustomerId, customer_id, explain_doc, profile_doc, stages_doc
from engine.journey import (
    CustomerState,
    DeliveryPolicy,
    Outcome,
    QuietHours,
    StageMachine,
    TriggerMemory,
    load_preset,
)
from engine.journey.state import Move
from engine.metrics import stage_counts
from engine.worker.state_store import UnreadableState, encode_state
from engine.worker.table_view import StageTally, key_partition, stage_of
from tests.unit.journeys import at, ev, replay
from tests.unit.triggering import Partition, engine, outcomes

SAAS = load_preset("saas")
OPENAPI_PATH = Path(__file__).resolve().parents[2] / "engine" / "worker" / "openapi.json"
OPENAPI = json.loads(OPENAPI_PATH.read_text("utf-8"))
ODD_IDS = ["plain", 'quo"te', "back\\slash", 'a,"m":"x","mv":2,"s":"y', "ü-ß-字", "tab\there", ""]


def journey(cid: str, *steps: str) -> CustomerState:
    state, _ = replay(StageMachine(SAAS), [ev(s, day=d, customer=cid) for d, s in enumerate(steps)])
    return state


STATES = [
    journey("c1", "page"),
    journey("c2", "page", "Signed Up"),
    journey("c3", "Signed Up", "Order Completed", "Feature Used"),
    *(journey(cid or "empty", "page", "Signed Up") for cid in ODD_IDS),
    CustomerState("nostage", "saas", 1),
]


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.customer_id)
def test_stage_read_from_the_raw_record_is_the_decoded_one(state: CustomerState) -> None:
    expected = None if state.stage is None else (state.model, state.stage)
    assert stage_of(encode_state(state)) == expected


def test_tally_of_raw_records_matches_counting_decoded_states() -> None:
    tally = StageTally()
    for state in STATES:
        tally.add(encode_state(state))
    assert tally.counts() == stage_counts(STATES)
    assert tally.counts()["saas", "evaluation"] == 1 + len(ODD_IDS)


def test_unreadable_records_raise_with_the_reason() -> None:
    with pytest.raises(UnreadableState, match="unsupported state record version 99"):
        stage_of(b'{"v": 99}')
    with pytest.raises(UnreadableState):
        stage_of(b"not json")
    with pytest.raises(UnreadableState):
        stage_of(b'{"v":1,"id":"x","m":"saas","mv":1,"q":2,"se":null}')  # no "s"
    tally = StageTally()
    tally.add(b'{"v":1,"id":"x","m":"saas","mv":1,"q":2,"se":null}')
    with pytest.raises(UnreadableState):
        tally.counts()


def test_key_partition_is_the_kafka_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for partitions in (1, 2, 4, 12):
        every = list(range(partitions))
        for n in range(300):
            key = f"customer-{n}".encode()
            assert key_partition(key, partitions) == partitioner(key, every, every)


def test_customer_ids_as_the_engine_reads_them() -> None:
    assert customer_id("x" * 512) == "x" * 512
    assert customer_id(" a/b ") == " a/b "
    for bad in ("", "x" * 513):
        with pytest.raises(BadCustomerId):
            customer_id(bad)


def test_profile_is_the_redis_profile_typed() -> None:
    profile = profile_doc(STATES[2])
    assert profile["customer_id"] == "c3"
    assert (profile["stage"], profile["stage_rule"], profile["events"]) == (
        "onboarding",
        "first_activity",
        3,
    )
    assert profile["visits"] == {"evaluation": 1, "acquisition": 1, "onboarding": 1}


def test_explain_lists_each_move_with_its_rule_and_message() -> None:
    state = STATES[2]
    doc = explain_doc(state, SAAS)
    assert [(m["from_stage"], m["to_stage"], m["rule"]) for m in doc["history"]] == [
        (None, "evaluation", "signed_up"),
        ("evaluation", "acquisition", "purchased"),
        ("acquisition", "onboarding", "first_activity"),
    ]
    rules = {r.name: r.description for r in SAAS.rules}
    assert [m["rule_description"] for m in doc["history"]] == [
        rules["signed_up"], rules["purchased"], rules["first_activity"]
    ]  # fmt: skip
    assert [m["message_id"] for m in doc["history"]] == [m.message_id for m in state.history]
    assert doc["history"][0]["at"] == "2024-06-03T00:00:00.000Z"
    assert (doc["moves"], doc["history_truncated"]) == (3, False)
    assert doc["pending_timers"] == doc["triggers"] == doc["policy_decisions"] == []
    conforms(doc, "Explain")


def test_explain_says_when_the_history_lost_older_moves_and_unknown_rules() -> None:
    state = STATES[2]
    shortened = dataclasses.replace(state, history=state.history[-1:], model="other")
    doc = explain_doc(shortened, SAAS)
    assert (doc["moves"], len(doc["history"]), doc["history_truncated"]) == (3, 1, True)
    assert doc["history"][0]["rule_description"] is None  # not the worker's model


def conforms(doc: Any, schema: str) -> None:
    """``doc`` is valid against ``components/schemas/<schema>`` of the OpenAPI document."""
    wrapper = {"components": OPENAPI["components"], "$ref": f"#/components/schemas/{schema}"}
    validator = Draft202012Validator(wrapper, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors[:5]


def test_explain_lists_sent_and_held_triggers_and_the_remembered_decisions() -> None:
    """Two triggers held overnight, a cap of one a day: the churn-risk one goes out,
    the nurture one is capped; a promoter trigger the next night is held."""
    quiet = DeliveryPolicy(cooldown_ms={}, daily_cap=1, quiet=QuietHours(time(21), time(8)))
    part = Partition(engine(policy=quiet))
    part.send(ev("Signed Up", 0, 22))
    part.advance(at(7, 23))  # trial_stalled (nurture) held
    part.send(ev("Payment Failed", 7, 23, minute=30))  # churn risk, held too
    part.advance(at(8, 12))
    part.send(ev("NPS Submitted", 8, 22, props={"score": 10}))  # promoter, held
    assert [o for _, o in outcomes(part.effects)] == [
        Outcome.HELD, Outcome.HELD, Outcome.SENT, Outcome.CAPPED, Outcome.HELD
    ]  # fmt: skip
    ids = {d.rule: d.trigger_id for d in part.decisions()}
    promoted = part.decisions()[-1].cause.key
    state = part.states["c1"]

    doc = explain_doc(state, SAAS, part.engine.pending_timers(state))
    conforms(doc, "Explain")
    assert (
        doc["policy_decisions"]
        == [  # newest first
            {
                "decided_at": "2024-06-11T08:30:00Z",
                "trigger_id_prefix": ids["trial_stalled"][:10],
                "type": "nurture",
                "priority": 30,
                "rule": "trial_stalled",
                "outcome": "capped",
            },
            {
                "decided_at": "2024-06-11T08:30:00Z",
                "trigger_id_prefix": ids["payment_failed"][:10],
                "type": "churn-risk",
                "priority": 95,
                "rule": "payment_failed",
                "outcome": "sent",
            },
        ]
    )
    assert doc["triggers"] == [
        {
            "trigger_id": ids["promoter"],
            "type": "advocacy-ask",
            "rule": "promoter",
            "stage": "evaluation",
            "status": "held",
            "fired_at": "2024-06-11T22:00:00.000Z",
            "cause": promoted,
        },
        {
            "trigger_id_prefix": ids["payment_failed"][:10],
            "type": "churn-risk",
            "rule": "payment_failed",
            "status": "sent",
            "sent_at": "2024-06-11T08:30:00Z",
        },
    ]
    assert [t["rule"] for t in doc["pending_timers"]] == ["promoter"]  # its release


def test_explain_of_decisions_stored_before_rules_and_outcomes_were_kept() -> None:
    quiet = DeliveryPolicy(cooldown_ms={}, daily_cap=1, quiet=None)
    part = Partition(engine(policy=quiet))
    part.run([ev("Signed Up", 0), ev("Payment Failed", 6, 6)])
    part.advance(at(8))  # trial_stalled due day 7, 00:00: capped after payment_failed
    assert outcomes(part.effects) == [
        ("payment_failed", Outcome.SENT),
        ("trial_stalled", Outcome.CAPPED),
    ]
    state = part.states["c1"]
    assert state.triggers is not None
    older = {k: v for k, v in state.triggers.to_dict().items() if k != "w"}
    doc = explain_doc(dataclasses.replace(state, triggers=TriggerMemory.from_dict(older)), SAAS)
    conforms(doc, "Explain")
    assert [(d["rule"], d["outcome"], d["type"]) for d in doc["policy_decisions"]] == [
        (None, "not_sent", "nurture"),
        (None, "sent", "churn-risk"),
    ]
    assert [(t["rule"], t["status"], t["type"]) for t in doc["triggers"]] == [
        (None, "sent", "churn-risk")
    ]


def test_stages_in_path_order_with_counts() -> None:
    counts = Counter({("saas", "usage"): 4, ("saas", "churned"): 1, ("b2b", "usage"): 9})
    doc = stages_doc(SAAS, counts, "worker", ["http://w1"])
    names = [s["stage"] for s in doc["stages"]]
    assert names[: len(SAAS.path)] == list(SAAS.path)
    assert set(names) == set(SAAS.stages)
    assert {s["stage"]: s["customers"] for s in doc["stages"] if s["customers"]} == {
        "usage": 4,
        "churned": 1,
    }
    assert doc["customers"] == 5
    assert all(s["on_path"] == (s["stage"] in SAAS.path) for s in doc["stages"])


def test_explain_describes_a_move_made_by_a_time_rule() -> None:
    """The `inactive` time rule moves a customer to at_risk: its description is the
    trigger rule's (time rules are not among the model's stage rules)."""
    inactive = next(r for r in SAAS.triggers.rules if r.name == "inactive")
    assert inactive.description
    state = STATES[2]
    moved = Move(state.stage, "at_risk", at(30), "inactive", "timer:inactive@1")
    doc = explain_doc(dataclasses.replace(state, history=(*state.history, moved)), SAAS)
    last = doc["history"][-1]
    assert (last["rule"], last["rule_description"]) == ("inactive", inactive.description)
    assert doc["history"][0]["rule_description"]  # stage rules keep theirs
