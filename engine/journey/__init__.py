"""The pure core: lifecycle models, customer state and the stage machine.

Nothing in this package performs I/O or reads the wall clock; time arrives as an
argument and effects are returned, never executed.
"""

from engine.journey.clocks import EventTimeClock, PartitionClocks
from engine.journey.effects import Duplicate, Effect, StageChanged
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
from engine.journey.state import CustomerState
from engine.journey.timer_index import TimerIndex
from engine.journey.timers import Timer, TimerKind
from engine.journey.trigger_rules import TriggerType
from engine.journey.trigger_state import TriggerMemory

__all__ = [
    "CustomerState",
    "Duplicate",
    "Effect",
    "Event",
    "EventTimeClock",
    "EventType",
    "LifecycleModel",
    "ModelError",
    "PartitionClocks",
    "StageChanged",
    "StageMachine",
    "StateError",
    "Timer",
    "TimerIndex",
    "TimerKind",
    "TriggerMemory",
    "TriggerType",
    "load_model",
    "load_preset",
    "message_hash",
    "preset_names",
    "resolve_model",
    "with_trigger_durations",
]
