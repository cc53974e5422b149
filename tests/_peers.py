"""Small helpers for the peers' scenarios (``tests/test_peer_*.py``), public API only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar, cast

import pytest
import trio

import beluga_trio as bt
from beluga_trio.testing import no_leaks

T = TypeVar("T")


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``: itself, or the members of its groups, flattened."""
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        return [leaf for member in group.exceptions for leaf in leaves(member)]
    return [exc]


def holds(exc: BaseException, target: BaseException) -> bool:
    """Whether ``target`` itself (not a copy) is ``exc`` or one of its group members."""
    return any(leaf is target for leaf in leaves(exc))


async def async_source(items: Iterable[T]) -> AsyncIterator[T]:
    """An async generator over ``items`` with a checkpoint before each one, to force the
    async code paths (asyncstdlib's ``asyncify``)."""
    for item in items:
        await trio.lowlevel.checkpoint()
        yield item


def async_stream(items: Iterable[T]) -> bt.Stream[T]:
    """A stream over a fresh async generator object (a one-shot async source)."""
    return bt.from_iterable(async_source(list(items)))


def chained(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception hanging off it as ``__cause__``/``__context__``, or held
    by a group on the way."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(cast("BaseExceptionGroup[BaseException]", current).exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


class RaiseTogether:
    """Makes tasks raise their exceptions at (nearly) the same moment, in the given order,
    so that every one is really raised: each waits until all have arrived, then raises one
    scheduling step after the one before it in ``order``, in a cancel-shielded wait so that
    the library's reaction to the first cannot stop the next. ``raised`` lists what was
    raised, in order."""

    def __init__(self, *order: BaseException) -> None:
        self._order = order
        self._arrived = 0
        self._go = trio.Event()
        self.raised: list[BaseException] = []

    async def raise_(self, exc: BaseException) -> None:
        rank = next(i for i, e in enumerate(self._order) if e is exc)
        self._arrived += 1
        if self._arrived < len(self._order):
            await self._go.wait()
        else:
            self._go.set()
            await trio.lowlevel.cancel_shielded_checkpoint()  # level with the woken ones
        for _ in range(rank + 1):
            await trio.lowlevel.cancel_shielded_checkpoint()
        self.raised.append(exc)
        raise exc


# trio picks the order of tasks woken at the same moment at random, and so may the library's
# reaction to them: a scenario that depends on it is run this many times.
REPEAT = 20


async def assert_interrupt_comes_first(
    scenario: Callable[[RaiseTogether, BaseException, BaseException], Awaitable[object]],
    *,
    error_first: bool,
) -> None:
    """Run ``scenario(together, error, interrupt)`` `REPEAT` times, with a fresh
    `ZeroDivisionError` and `KeyboardInterrupt` raised together (``error_first`` says which
    first): each time the interrupt must come out as itself (never grouped, never dropped)
    with the error hanging off it as its ``__cause__``, itself too (one error is never put in
    a group of one)."""
    for _ in range(REPEAT):
        error, interrupt = ZeroDivisionError(), KeyboardInterrupt()
        together = RaiseTogether(*((error, interrupt) if error_first else (interrupt, error)))
        with no_leaks(), pytest.raises(KeyboardInterrupt) as caught:
            await scenario(together, error, interrupt)
        assert len(together.raised) == 2
        assert caught.value is interrupt
        assert any(e is error for e in chained(caught.value)), "the other error was lost"
        assert caught.value.__cause__ is error, f"the cause is {caught.value.__cause__!r}"
