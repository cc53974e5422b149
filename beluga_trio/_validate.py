"""The checks every public callable makes on its arguments when it is called (when a stream is
built, not when it runs), with one message style: what needs what, and what was given.

The ``check_*`` functions take the public name of the call and of the argument. The plan's
nodes (frozen attrs classes, `._stage.Node`) use them through the attrs validators below,
which take the call's name from the node's ``name`` and the argument's from the field's
``alias`` (its name without the leading underscore): a node declares what its options are,
and building it checks them.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

from ._util import is_async_callable

if TYPE_CHECKING:
    import attrs

__all__ = [
    "KEY",
    "RETURNS_A_STREAM",
    "boolean",
    "check_bool",
    "check_choice",
    "check_count",
    "check_function",
    "check_seconds",
    "choice",
    "count",
    "function",
    "seconds",
    "to_seconds",
]

T = TypeVar("T")


def _given(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _describe(fn: object) -> str:
    return repr(getattr(fn, "__qualname__", fn))


def check_count(
    where: str, name: str, value: object, *, minimum: int = 0, alternative: str = ""
) -> int:
    """An `int` (a `bool` is refused: ``True`` is not a count) of at least ``minimum``.
    ``alternative`` names what else the caller accepts, for the message."""
    other = f" or {alternative}" if alternative else ""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where}() needs {name} to be an int{other}, got {_given(value)}")
    if value < minimum:
        raise ValueError(f"{where}() needs {name} to be an int >= {minimum}{other}, got {value}")
    return value


def check_seconds(
    where: str, name: str, value: object, *, zero: bool = False, alternative: str = ""
) -> float:
    """A finite number of seconds > 0 (>= 0 with ``zero``): an int or a float, not a bool.
    ``alternative`` names what else the caller accepts, for the message."""
    other = f" or {alternative}" if alternative else ""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(
            f"{where}() needs {name} to be a number of seconds{other}, got {_given(value)}"
        )
    if not (value >= 0 if zero else value > 0) or value == math.inf:
        bound = ">= 0" if zero else "> 0"
        raise ValueError(
            f"{where}() needs {name} to be a finite number of seconds {bound}{other}, got {value}"
        )
    return float(value)


def check_bool(where: str, name: str, value: object) -> bool:
    """``True`` or ``False`` exactly (a truthy string is a mistake, not a choice)."""
    if not isinstance(value, bool):
        raise TypeError(f"{where}() needs {name} to be True or False, got {_given(value)}")
    return value


def check_choice(where: str, name: str, value: T, choices: Collection[T]) -> T:
    """One of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{where}() needs {name} to be one of {options}, got {value!r}")
    return value


def _generator_kind(fn: object) -> str | None:
    """``"an async generator"``/``"a generator"`` if calling ``fn`` makes a generator object:
    a generator function, a `functools.partial` of one, or an object whose type's ``__call__``
    is one. Read from the code's flags: `inspect`'s predicates cost microseconds, and every
    ``map`` pays this when it is built."""
    while isinstance(fn, functools.partial):
        fn = cast("functools.partial[object]", fn).func
    if not isinstance(fn, types.FunctionType | types.MethodType):
        if isinstance(fn, _NEVER_GENERATORS):
            return None
        fn = getattr(type(fn), "__call__", None)  # noqa: B004 - the type's method
    flags: int = getattr(getattr(fn, "__code__", None), "co_flags", 0)
    if flags & inspect.CO_ASYNC_GENERATOR:
        return "an async generator"
    if flags & inspect.CO_GENERATOR:
        return "a generator"
    return None


#: Callables whose call never makes a generator object.
_NEVER_GENERATORS: Final = (types.BuiltinFunctionType, types.MethodDescriptorType, type)


#: Why a function must not be ``async def``, for ``plain=``.
RETURNS_A_STREAM: Final = "put the async work inside the stream it returns"
KEY: Final = (
    "a key is computed without awaiting: pair each item with its key in an async `map` first, "
    "then use `key=lambda pair: pair[0]`"
)


def check_function(
    where: str, name: str, fn: object, *, plain: str | None = None
) -> Callable[..., Any]:
    """A callable that returns a value: a generator function is refused (its calls return
    generator objects, not results). With ``plain`` (the reason, for the message), an
    ``async def`` function is refused too: a function that returns a cold `Stream`
    (`RETURNS_A_STREAM`) or a key (`KEY`)."""
    if not callable(fn):
        raise TypeError(f"{where}() needs {name} to be a function, got {_given(fn)}")
    kind = _generator_kind(fn)
    if kind is not None:
        raise TypeError(
            f"{where}() needs {name} to be a function that returns a value, got {kind} function "
            f"{_describe(fn)}; use a plain or `async def` function"
        )
    if plain is not None and is_async_callable(fn):
        raise TypeError(
            f"{where}() needs {name} to be a plain (not `async def`) function, got "
            f"{_describe(fn)}; {plain}"
        )
    return fn


# ------------------------------------------------------------------- validators for nodes


class _Named(Protocol):
    @property
    def name(self) -> str: ...


#: An attrs validator: ``(node, field, value)``; raises if ``value`` does not fit.
Validator = Callable[[_Named, "attrs.Attribute[Any]", Any], None]


def _argument(field: attrs.Attribute[Any]) -> str:
    return field.alias or field.name


def count(*, minimum: int = 0, optional: bool = False) -> Validator:
    """`check_count`, as a validator; with ``optional``, ``None`` passes."""

    def validate(node: _Named, field: attrs.Attribute[Any], value: object) -> None:
        if not (optional and value is None):
            check_count(node.name, _argument(field), value, minimum=minimum)

    return validate


def seconds(*, optional: bool = False) -> Validator:
    """`check_seconds` (> 0), as a validator; with ``optional``, ``None`` passes. Goes with
    the converter `to_seconds`."""

    def validate(node: _Named, field: attrs.Attribute[Any], value: object) -> None:
        if not (optional and value is None):
            check_seconds(node.name, _argument(field), value)

    return validate


def to_seconds(value: object) -> Any:
    """The converter that goes with `seconds`: a positive int becomes a float
    (``timeout(first=1)`` reads ``first=1.0``). Anything else is left as it was given for the
    validator to judge (attrs converts first), so that its message shows what was given."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    return value


def boolean(node: _Named, field: attrs.Attribute[Any], value: object) -> None:
    """`check_bool`, as a validator."""
    check_bool(node.name, _argument(field), value)


def choice(choices: Collection[object]) -> Validator:
    """`check_choice`, as a validator."""

    def validate(node: _Named, field: attrs.Attribute[Any], value: object) -> None:
        check_choice(node.name, _argument(field), value, choices)

    return validate


def function(*, plain: str | None = None, optional: bool = False) -> Validator:
    """`check_function`, as a validator; with ``optional``, ``None`` passes."""

    def validate(node: _Named, field: attrs.Attribute[Any], value: object) -> None:
        if not (optional and value is None):
            check_function(node.name, _argument(field), value, plain=plain)

    return validate
