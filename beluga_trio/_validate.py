"""The checks every public callable makes on its arguments when it is called (when a stream is
built, not when it runs), with one message style: what needs what, and what was given."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Collection
from typing import Any, TypeVar

__all__ = ["check_bool", "check_choice", "check_count", "check_function", "check_seconds"]

T = TypeVar("T")


def _given(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def check_count(where: str, name: str, value: object, *, minimum: int = 0) -> int:
    """An `int` (a `bool` is refused: ``True`` is not a count) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where}() needs {name} to be an int, got {_given(value)}")
    if value < minimum:
        raise ValueError(f"{where}() needs {name} to be an int >= {minimum}, got {value}")
    return value


def check_seconds(where: str, name: str, value: object) -> float | None:
    """``None``, or a finite number of seconds > 0 (an int or a float, not a bool)."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{where}() needs {name} to be a number of seconds, got {_given(value)}")
    if not value > 0 or value == math.inf:
        raise ValueError(
            f"{where}() needs {name} to be a finite number of seconds > 0, got {value}"
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


def check_function(where: str, name: str, fn: object) -> Callable[..., Any]:
    """A callable that returns a value: an async generator function is refused (its calls
    return generator objects, not results; a ``@stream`` goes with ``flat_map``-like uses)."""
    if not callable(fn):
        raise TypeError(f"{where}() needs {name} to be a function, got {_given(fn)}")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        raise TypeError(
            f"{where}() needs {name} to be a function that returns a value, got {kind} function "
            f"{getattr(fn, '__qualname__', fn)!r}; use a plain or `async def` function"
        )
    return fn
