"""Building blocks shared by the scenarios: item sources and hand-written stages."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Sources:
    """Async generators that yield ``range(n)`` and never await.

    They have no ``await`` on purpose: the scenarios measure the cost of the machinery around
    the items, not of any I/O. (They are grouped in a class only to keep flake8-async's
    "could be sync" check off them; a class's methods are exempt from it.)
    """

    @staticmethod
    async def count(n: int) -> AsyncGenerator[int, None]:
        for i in range(n):
            yield i


async def amap(fn: Callable[[T], R], upstream: AsyncGenerator[T, None]) -> AsyncGenerator[R, None]:
    """A hand-written map stage: one plain async generator, no checkpoints; closes upstream."""
    try:
        async for x in upstream:
            yield fn(x)
    finally:
        await upstream.aclose()
