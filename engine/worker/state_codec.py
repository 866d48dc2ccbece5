"""The Faust codec for customer records: orjson of the compact dict form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.serializers import codecs

from engine.journey import CustomerState, StateError

CODEC_NAME = "journey_state"


class StateCodec(faust.Codec):
    """Reads are recovery reads: a record that cannot be read calls ``on_error``.

    Faust's recovery loop logs decoding errors as warnings and waits forever; the
    worker passes an ``on_error`` that crashes it instead, so a corrupt changelog
    stops the worker loudly rather than leaving it stuck before "ready".
    """

    def __init__(self, on_error: Callable[[Exception], None] | None = None) -> None:
        super().__init__()
        self.on_error = on_error

    def _dumps(self, obj: Any) -> bytes:
        if not isinstance(obj, CustomerState):
            raise TypeError(f"the customers table holds CustomerState, not {type(obj).__name__}")
        return orjson.dumps(obj.to_dict())

    def _loads(self, s: bytes) -> Any:
        try:
            return CustomerState.from_dict(orjson.loads(s))
        except (orjson.JSONDecodeError, StateError) as exc:
            if self.on_error is not None:
                self.on_error(exc)
            raise


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


def register_state_codec(on_error: Callable[[Exception], None] | None = None) -> None:
    codecs.register(CODEC_NAME, StateCodec(on_error))
