"""The pure core: lifecycle models, customer state, the stage machine and triggers.

Nothing in this package performs I/O or reads the wall clock; time arrives as an
argument and effects are returned, never executed.
"""

from engine.journey.clocks import EventTimeClock, PartitionClocks
from engine.journey.effects import (
    Cause,
    Duplicate,
    Effect,
    Outcome,
    PolicyDecision,
    StageChanged,
    TimerIgnored,
    TriggerFired,
)
from engine.journey.errors import ModelError, StateError
from engine.journey.events import Event, EventType
from engine.journey.machine import StageMachine, message_hash
from engine.journey.model import (
    LifecycleModel,
    load_model,
    load_preset,
    preset_names,
    resolve_model,
    with_trigger_durations,
)
from engine.journey.policy import DeliveryPolicy, QuietHours
from engine.journey.state import CustomerState
from engine.journey.timer_index import TimerIndex
from engine.journey.timers import Timer, TimerKind
from engine.journey.trigger_rules import TriggerType
from engine.journey.trigger_state import TriggerMemory
from engine.journey.triggers import TriggerEngine, trigger_id

__all__ = [
    "Cause",
    "CustomerState",
    "DeliveryPolicy",
    "Duplicate",
    "Effect",
    "Event",
    "EventTimeClock",
    "EventType",
    "LifecycleModel",
    "ModelError",
    "Outcome",
    "PartitionClocks",
    "PolicyDecision",
    "QuietHours",
    "StageChanged",
    "StageMachine",
    "StateError",
    "Timer",
    "TimerIgnored",
    "TimerIndex",
    "TimerKind",
    "TriggerEngine",
    "TriggerFired",
    "TriggerMemory",
    "TriggerType",
    "load_model",
    "load_preset",
    "message_hash",
    "preset_names",
    "resolve_model",
    "trigger_id",
    "with_trigger_durations",
]
