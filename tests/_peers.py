"""Small helpers for the peers' scenarios (``tests/test_peer_*.py``), public API only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TypeVar, cast

import trio

import beluga_trio as bt

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
