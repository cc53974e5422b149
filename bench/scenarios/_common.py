"""Building blocks shared by the scenarios: item sources and hand-written stages.

The hand-written channel code comes in the two forms docs/design.md measures: *naive* (``await
send`` per item, ``async for`` on the receiving side: every item passes through the
scheduler) and *nowait* (the fast paths: the producer tries ``send_nowait`` first and awaits
``send`` only when the channel is full; the consumer takes everything that is ready with
``receive_nowait`` and awaits ``receive`` only when the channel is empty).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


class Sources:
    """Async generators that yield ``range(...)`` and never await.

    They have no ``await`` on purpose: the scenarios measure the cost of the machinery around
    the items, not of any I/O. (They are grouped in a class only to keep flake8-async's
    "could be sync" check off them; a class's methods are exempt from it.)
    """

    @staticmethod
    async def count(n: int) -> AsyncGenerator[int, None]:
        for i in range(n):
            yield i

    @staticmethod
    async def span(start: int, stop: int) -> AsyncGenerator[int, None]:
        for i in range(start, stop):
            yield i


async def amap(fn: Callable[[T], R], upstream: AsyncIterator[T]) -> AsyncGenerator[R, None]:
    """A hand-written map stage: one plain async generator, no checkpoints; closes upstream
    (when it is an async generator: a channel is closed by whoever opened it)."""
    try:
        async for x in upstream:
            yield fn(x)
    finally:
        if isinstance(upstream, AsyncGenerator):
            await upstream.aclose()


# Hand-written channel code -------------------------------------------------------------------


async def send_all_nowait(items: Iterable[T], tx: trio.MemorySendChannel[T]) -> None:
    """Producer, fast path: ``send_nowait`` first, ``await send`` only when full; closes tx."""
    send_nowait = tx.send_nowait
    async with tx:
        for x in items:
            try:
                send_nowait(x)
            except trio.WouldBlock:
                await tx.send(x)


async def send_all_naive(items: Iterable[T], tx: trio.MemorySendChannel[T]) -> None:
    """Producer, naive: ``await send`` per item; closes tx."""
    async with tx:
        for x in items:
            await tx.send(x)


async def receive_all_nowait(rx: trio.MemoryReceiveChannel[T], sink: Callable[[T], object]) -> None:
    """Consumer, fast path: hand every ready item to ``sink`` (a C-level call such as
    ``list.append``) with ``receive_nowait``; ``await receive`` only when empty; closes rx."""
    receive_nowait = rx.receive_nowait
    async with rx:
        while True:
            try:
                while True:
                    sink(receive_nowait())
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                return
            try:
                sink(await rx.receive())
            except trio.EndOfChannel:
                return


async def receive_all_naive(rx: trio.MemoryReceiveChannel[T], sink: Callable[[T], object]) -> None:
    """Consumer, naive: ``async for`` over the channel; closes rx."""
    async with rx:
        async for x in rx:
            sink(x)


def split(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` consecutive ranges of (nearly) equal length."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]
