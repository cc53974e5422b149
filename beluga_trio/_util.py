"""Small helpers shared by the operators."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

__all__ = [
    "PLAIN_TYPES",
    "check_not_awaitable",
    "checked_items",
    "close_awaitable",
    "describe",
    "is_async_callable",
]

T = TypeVar("T")


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine, judged from its definition.

    Sees through `functools.partial` and callable objects whose ``__call__`` is
    ``async def``. Decided once, when the operator is built, so that sync functions can run
    in the fused fast path with no per-item check.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType]
    if isinstance(fn, _BUILTIN_CALLABLES):
        return False  # never `async def`: skip the slower inspect call (maps are built often)
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, _PLAIN_CALLABLES):
        return False  # their type's __call__ is never `async def`
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we want the type's method
    return call is not None and inspect.iscoroutinefunction(call)


_BUILTIN_CALLABLES: Final = (types.BuiltinFunctionType, types.MethodDescriptorType, type)
_PLAIN_CALLABLES: Final = (types.FunctionType, types.MethodType, *_BUILTIN_CALLABLES)


#: Types whose instances are known not to be awaitable (a result's type is looked up once).
PLAIN_TYPES: set[type] = {int, float, str, bytes, bool, type(None), list, tuple, dict, set}


def check_not_awaitable(result: object, fn: object, role: str) -> None:
    """Raise a clear `TypeError` when a function taken for sync returned an awaitable.

    ``lambda x: fetch(x)`` is a sync function that returns a coroutine; treating the
    coroutine as the item would silently produce garbage. The stray coroutine is closed so that
    no "never awaited" warning follows the error. Cheap enough to call on every result: a
    result's type is inspected once, then remembered as plain.
    """
    cls = result.__class__
    if cls in PLAIN_TYPES:
        return
    if inspect.isawaitable(result):
        close_awaitable(result)
        raise TypeError(
            f"the {role} function {describe(fn)} is not declared `async def` but returned an "
            f"awaitable ({type(result).__name__}); declare it with `async def` so that "
            "beluga_trio awaits it"
        )
    if cls is not types.GeneratorType and len(PLAIN_TYPES) < 4096:
        # A generator is awaitable or not by its code's flags, not by its type.
        PLAIN_TYPES.add(cls)


def checked_items(it: Iterator[T], check: Callable[..., object] | None) -> Iterator[T]:
    """``it`` (a fused sync chain) with each item checked for a stray awaitable, if ``check``
    (the chain's last sync ``map`` function) is set. For a fused stage that consumes the items
    (a batch, a zip, a fold, a stage that drops some) instead of passing them on unchanged: the
    chain's driver checks an item only as it leaves the chain, and a coroutine inside a batch,
    or one dropped, would not be seen. The `TypeError` comes at the item's position."""
    if check is None:
        return it

    def checked(item: T) -> T:
        if item.__class__ not in PLAIN_TYPES:
            check_not_awaitable(item, check, "map")
        return item

    return map(checked, it)


def close_awaitable(value: object) -> None:
    """Close ``value`` if it is an awaitable that will never be awaited (a coroutine), so that
    no "never awaited" warning follows."""
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()


def describe(fn: object) -> str:
    """A short human name for a user function, for error messages and reprs."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)
