"""A fast ``dataclasses.replace`` for the frozen, slotted dataclasses of the core.

``dataclasses.replace`` loops over the fields and calls the frozen ``__init__``,
which sets each field through ``object.__setattr__``; on the per-event path that
costs more than the rest of the state update. :func:`replacer` generates, once, a
function that takes the changed fields positionally and fills the slots directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def replacer(cls: type[T], *names: str) -> Callable[..., T]:
    """``replacer(C, "a", "b")(obj, a, b)`` equals ``dataclasses.replace(obj, a=a, b=b)``.

    Every field not named is taken from ``obj``, so fields added to ``cls`` later
    are carried over unchanged, as ``replace`` would. ``__post_init__`` runs when
    the class has one. Only for slotted dataclasses whose fields are all
    ``__init__`` parameters.
    """
    if not is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    all_names = [f.name for f in fields(cls)]
    if any(not f.init for f in fields(cls)) or len(set(names)) != len(names):
        raise TypeError(f"cannot generate a replacer for {cls.__name__}{names}")
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def replace_{'_'.join(names)}(_obj, {', '.join(names)}):", "    _out = _new(_cls)"]
    for name in all_names:
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        value = name if name in names else f"_obj.{name}"
        lines.append(f"    _set_{name}(_out, {value})")
    if hasattr(cls, "__post_init__"):
        lines.append("    _out.__post_init__()")
    lines.append("    return _out")
    exec("\n".join(lines), namespace)  # the source is built from field names only
    made: Callable[..., T] = namespace[f"replace_{'_'.join(names)}"]
    return made
