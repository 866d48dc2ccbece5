"""Fast construction and ``replace`` for the frozen, slotted dataclasses of the core.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
(its own ``__setattr__`` refuses), and ``dataclasses.replace`` adds a loop over the
fields: on the per-event path that is a large part of the work. :func:`constructor`
and :func:`replacer` generate, once per class, a function that fills the slots of
a *twin*, a plain class with exactly the same slots, with ordinary attribute
stores, and then turns the object into the frozen class by assigning
``__class__`` (Python allows that between classes of the same layout). The object
made is an ordinary instance of the frozen class: equal, hashed and frozen like
any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def constructor(cls: type[T]) -> Callable[..., T]:
    """``constructor(C)`` takes the arguments ``C(...)`` takes, with the same
    defaults (a ``default_factory`` is called for each object), and makes the same
    object. ``__post_init__`` runs if defined.
    """
    all_names = _check(cls, ())
    return _generate(cls, f"make_{cls.__name__}", all_names, all_names, defaults=True)


def replacer(cls: type[T], *names: str) -> Callable[..., T]:
    """``replacer(C, "a", "b")(obj, a, b)`` equals ``dataclasses.replace(obj, a=a, b=b)``.

    Every field not named is taken from ``obj``, so fields added to ``cls`` later
    are carried over unchanged, as ``replace`` would. ``__post_init__`` runs when
    the class has one.
    """
    all_names = _check(cls, names)
    return _generate(cls, f"replace_{'_'.join(names)}", ["_obj", *names], all_names)


def _check(cls: type[Any], names: tuple[str, ...]) -> list[str]:
    """The names of the ``__init__`` fields of ``cls``, after checking that functions
    can be generated: a slotted dataclass straight on ``object``, and ``names``
    distinct ``__init__`` fields."""
    if not is_dataclass(cls) or "__slots__" not in cls.__dict__ or cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass based on object")
    init_names = [f.name for f in fields(cls) if f.init]
    if len(set(names)) != len(names):
        raise TypeError(f"cannot generate a function for {cls.__name__}{names}")
    unknown = sorted(set(names) - set(init_names))
    if unknown:
        raise TypeError(f"{cls.__name__} has no __init__ field(s) {', '.join(unknown)}")
    return init_names


def _twin(cls: type[Any]) -> type[Any]:
    """A plain class with the slots of ``cls``, whose objects may become ``cls``."""
    twin = type(f"{cls.__name__}Slots", (), {"__slots__": cls.__dict__["__slots__"]})
    probe: Any = object.__new__(twin)
    probe.__class__ = cls  # TypeError here if the layouts differ
    return twin


def _generate(
    cls: type[T], func: str, params: list[str], all_names: list[str], *, defaults: bool = False
) -> Callable[..., T]:
    """``def func(*params)`` making a ``cls`` whose ``__init__`` fields (``all_names``)
    are the parameters of the same name, and the others read from ``_obj``. With
    ``defaults``, a parameter for a field with a default gets that default."""
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_twin": _twin(cls),
        "_cls": cls,
        "_MISSING": MISSING,
    }
    by_name = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    signature, body = [], []
    for name in params:
        f = by_name.get(name)
        if f is None or not defaults:  # "_obj", or no defaults wanted
            signature.append(name)
        elif f.default is not MISSING:
            namespace[f"_default_{name}"] = f.default
            signature.append(f"{name}=_default_{name}")
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{name}"] = f.default_factory
            signature.append(f"{name}=_MISSING")
            body.append(f"    if {name} is _MISSING: {name} = _factory_{name}()")
        else:
            signature.append(name)
    lines = [f"def {func}({', '.join(signature)}):", *body, "    _out = _new(_twin)"]
    for name in all_names:
        value = name if name in params else f"_obj.{name}"
        lines.append(f"    _out.{name} = {value}")
    for f in fields(cls):  # type: ignore[arg-type]
        # Not __init__ parameters: as __init__ does, the default or nothing
        # (__post_init__ may set them).
        if f.init:
            continue
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            lines.append(f"    _out.{f.name} = _default_{f.name}")
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            lines.append(f"    _out.{f.name} = _factory_{f.name}()")
    lines.append("    _out.__class__ = _cls")
    if hasattr(cls, "__post_init__"):
        lines.append("    _out.__post_init__()")
    lines.append("    return _out")
    exec("\n".join(lines), namespace)  # the source is built from field names only
    made: Callable[..., T] = namespace[func]
    return made
