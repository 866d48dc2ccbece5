"""The Faust codec for customer records: orjson of the compact dict form."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.serializers import codecs

from engine.journey import CustomerState

CODEC_NAME = "journey_state"


class StateCodec(faust.Codec):
    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, CustomerState):
            raise TypeError(f"the customers table holds CustomerState, not {type(obj).__name__}")
        return orjson.dumps(obj.to_dict())

    def _loads(self, s: bytes) -> Any:
        return CustomerState.from_dict(orjson.loads(s))


class StateType:
    """The customers table's ``value_type``.

    Faust takes a table's value codec from ``value_type._options.serializer`` (JSON
    when there is none) for changelog writes and for recovery alike, then passes
    the decoded value through ``value_type.from_data``.
    """

    class _options:
        serializer = CODEC_NAME

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


def register_state_codec() -> None:
    codecs.register(CODEC_NAME, StateCodec())
