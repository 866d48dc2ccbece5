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
from engine.journey.trigger_state import TYPES
from engine.messages import iso
from engine.metrics import StageKey
from engine.profiles import pending_extras, profile_fields, read_profile


class BadCustomerId(ValueError):
    """A path segment that cannot be a customer id."""


def customer_id(raw: str) -> str:
    """The customer id of a request path, as the engine reads ids from input."""
    if not raw:
        raise BadCustomerId("the customer id is empty")
    if len(raw) > MAX_ID:
        raise BadCustomerId(f"the customer id is longer than {MAX_ID} characters")
    return raw


def profile_doc(state: CustomerState, pending: Sequence[Timer] = ()) -> dict[str, Any]:
    """The current profile: the fields of the Redis profile hash, typed, with the
    customer's pending timers (``TriggerEngine.pending_timers``). The last trigger
    fields are in the Redis hash only (written from the decisions as they are made)."""
    fields: dict[bytes | str, bytes | str] = {}
    fields.update(profile_fields(state, pending_extras(pending)))
    return read_profile(fields)


def explain_doc(
    state: CustomerState, model: LifecycleModel, pending: Sequence[Timer] = ()
) -> dict[str, Any]:
    """How the customer got to their stage, and why they got (or did not get) a
    trigger: every move kept in the state's history (``history_limit`` newest), with
    the model rule and the input message behind it.

    ``pending_timers``: the customer's timers (``TriggerEngine.pending_timers``), each
    with its rule and due time. ``policy_decisions``: the delivery-policy decisions
    the state remembers (``id_memory``, at most ``max_ids``), newest first: when
    (to the second), the first 10 hex digits of the trigger id (the full decision,
    with its reason, is on the decision topic, keyed by customer id), type,
    priority, rule and outcome. Held and duplicate decisions are not remembered;
    decisions stored before rules and outcomes were kept have no rule and the
    outcome ``sent`` or ``not_sent``. ``triggers``: those held back by quiet hours
    (with rule and cause), then the sent ones among the remembered decisions,
    newest first.
    """
    # A move's rule is a stage rule, or a time rule of the triggers (``move_to``).
    rules: dict[str, str] = (
        {r.name: r.description for r in (*model.triggers.rules, *model.rules)}
        if state.model == model.name
        else {}
    )
    moves_total = sum(state.visits.values())
    history = []
    for move in state.history:
        history.append(
            {
                "from_stage": move.from_stage,
                "to_stage": move.to_stage,
                "at": iso(move.at),
                "rule": move.rule,
                "rule_description": rules.get(move.rule) or None,
                "message_id": move.message_id,
            }
        )
    memory = state.triggers
    decided = memory.decisions() if memory is not None else []
    decided.reverse()
    decisions = [
        {
            "decided_at": _iso_s(d.at_s),
            "trigger_id_prefix": f"{d.digest:010x}",
            "type": TYPES[d.type_index].value,
            "priority": d.priority,
            "rule": d.rule,
            "outcome": d.outcome,
        }
        for d in decided
    ]
    triggers: list[dict[str, Any]] = [
        {
            "trigger_id": h.trigger_id,
            "type": h.type.value,
            "rule": h.rule,
            "stage": h.stage,
            "status": "held",
            "fired_at": iso(from_ms(h.fired_ms)),
            "cause": h.cause,
        }
        for h in (memory.held if memory is not None else ())
    ]
    triggers.extend(
        {
            "trigger_id_prefix": doc["trigger_id_prefix"],
            "type": doc["type"],
            "rule": doc["rule"],
            "status": "sent",
            "sent_at": doc["decided_at"],
        }
        for doc, d in zip(decisions, decided, strict=True)
        if d.sent
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
        "triggers": triggers,
        "policy_decisions": decisions,
    }


def _iso_s(at_s: int) -> str:
    """Epoch seconds as ISO 8601 UTC to the second, with a ``Z``."""
    return from_ms(at_s * 1000).isoformat(timespec="seconds").replace("+00:00", "Z")


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
