"""The JSON documents of the HTTP API, built from customer states. Pure: no I/O.

Their shapes are the schemas of ``engine/worker/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.ingest import MAX_ID
from engine.journey import CustomerState, LifecycleModel
from engine.journey.state import from_ms
from engine.journey.timers import Timer
from engine.messages import iso
from engine.metrics import StageKey
from engine.profiles import profile_fields, read_profile


class BadCustomerId(ValueError):
    """A path segment that cannot be a customer id."""


def customer_id(raw: str) -> str:
    """The customer id of a request path, as the engine reads ids from input."""
    if not raw:
        raise BadCustomerId("the customer id is empty")
    if len(raw) > MAX_ID:
        raise BadCustomerId(f"the customer id is longer than {MAX_ID} characters")
    return raw


def profile_doc(state: CustomerState) -> dict[str, Any]:
    """The current profile: the fields of the Redis profile hash, typed."""
    fields: dict[bytes | str, bytes | str] = {}
    fields.update(profile_fields(state))
    return read_profile(fields)


def explain_doc(
    state: CustomerState, model: LifecycleModel, pending: Sequence[Timer] = ()
) -> dict[str, Any]:
    """How the customer got to their stage: every move kept in the state's history
    (``history_limit`` newest), with the model rule and the input message behind it.

    ``pending_timers``: the customer's timers (``TriggerEngine.pending_timers``), each
    with its rule and due time. ``triggers``: triggers held back by quiet hours, with
    their rule and cause. Sent triggers and every policy decision are on the trigger
    and decision topics; the state keeps only their ids' digests, so
    ``policy_decisions`` stays empty here.
    """
    rules = {rule.name: rule for rule in model.rules} if state.model == model.name else {}
    moves_total = sum(state.visits.values())
    history = []
    for move in state.history:
        rule = rules.get(move.rule)
        history.append(
            {
                "from_stage": move.from_stage,
                "to_stage": move.to_stage,
                "at": iso(move.at),
                "rule": move.rule,
                "rule_description": None if rule is None else (rule.description or None),
                "message_id": move.message_id,
            }
        )
    return {
        "customer_id": state.customer_id,
        "model": state.model,
        "model_version": state.model_version,
        "stage": state.stage,
        "stage_entered_at": None if state.stage_entered_at is None else iso(state.stage_entered_at),
        "first_seen": None if state.first_seen is None else iso(state.first_seen),
        "last_seen": None if state.last_seen is None else iso(state.last_seen),
        "events": state.events,
        "late_events": state.late_events,
        "visits": dict(state.visits),
        "moves": moves_total,
        "history": history,
        "history_truncated": moves_total > len(history),
        "pending_timers": [
            {"kind": t.kind.value, "rule": t.rule, "due_at": iso(t.due_at)} for t in pending
        ],
        "triggers": [
            {
                "trigger_id": h.trigger_id,
                "type": h.type.value,
                "rule": h.rule,
                "stage": h.stage,
                "status": "held",
                "fired_at": iso(from_ms(h.fired_ms)),
                "cause": h.cause,
            }
            for h in (state.triggers.held if state.triggers is not None else ())
        ],
        "policy_decisions": [],
    }


def stages_doc(
    model: LifecycleModel, counts: Mapping[StageKey, int], scope: str, workers: list[str]
) -> dict[str, Any]:
    """The model's stages in path order, each with its customers."""
    order = [*model.path, *(s for s in model.stages if s not in model.path)]
    stages = []
    for name in order:
        stage = model.stages[name]
        stages.append(
            {
                "stage": name,
                "description": stage.description or None,
                "on_path": name in model.path,
                "paying": stage.paying,
                "customers": int(counts.get((model.name, name), 0)),
            }
        )
    return {
        "model": model.name,
        "model_version": model.version,
        "scope": scope,
        "workers": workers,
        "stages": stages,
        "customers": sum(s["customers"] for s in stages),
    }
