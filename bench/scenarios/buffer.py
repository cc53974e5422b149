"""Scenario "buffer(64)": a producer task reads ahead into a 64-item buffer; all collected.

The source is ``range(N)`` (synchronous, no awaits); a task moves its items into a bounded
buffer of 64 and the consumer takes them all. Reference: the same job hand-written with a
producer task and ``trio.open_memory_channel(64)`` using the nowait fast paths on both sides
(docs/design.md: ~530 ns/item, 1.1x the async-generator floor). A second hand-written row does it
naively (``await send`` / ``async for``: docs/design.md: ~16-19x the floor) to show what the fast
paths are worth.

``open() + async for`` takes the items one ``anext`` at a time, and every ``anext`` of a
beluga stream is a cancellation point; the drain loop of the reference does neither. A third
hand-written row consumes the same nowait channel item by item through a minimal async
iterator whose ``__anext__`` also calls ``checkpoint_if_cancelled()``: the floor for an
item-by-item consumer with that guarantee, to read the ``async for`` row against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar, final

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Scenario
from bench.scenarios._common import (
    receive_all_naive,
    receive_all_nowait,
    send_all_naive,
    send_all_nowait,
)

CAPACITY = 64

T = TypeVar("T")


def expected(n: int) -> list[int]:
    return list(range(n))


def load_reference() -> Job:
    async def job(n: int) -> list[int]:
        items: list[int] = []
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all_nowait, range(n), tx)
            await receive_all_nowait(rx, items.append)
        return items

    return job


@final
class _NowaitItems(AsyncIterator[T]):
    """The receiving side, one item per ``anext``: a cancellation point, then the nowait
    fast path, ``await receive()`` only when the channel is empty."""

    __slots__ = ("_receive", "_receive_nowait")

    def __init__(self, rx: trio.MemoryReceiveChannel[T]) -> None:
        self._receive = rx.receive
        self._receive_nowait = rx.receive_nowait

    async def __anext__(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self._receive_nowait()
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        try:
            return await self._receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


def load_item_by_item() -> Job:
    async def job(n: int) -> list[int]:
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all_nowait, range(n), tx)
            async with rx:
                items = [x async for x in _NowaitItems(rx)]
        return items

    return job


def load_naive() -> Job:
    async def job(n: int) -> list[int]:
        items: list[int] = []
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all_naive, range(n), tx)
            await receive_all_naive(rx, items.append)
        return items

    return job


def load_beluga_collect() -> Job:
    async def job(n: int) -> list[int]:
        return await bt.from_iterable(range(n)).buffer(CAPACITY).collect()

    return job


def load_beluga_open() -> Job:
    async def job(n: int) -> list[int]:
        async with bt.from_iterable(range(n)).buffer(CAPACITY).open() as it:
            return [x async for x in it]

    return job


REFERENCE = "hand-written channel(64), nowait"

SCENARIO = Scenario(
    name="buffer(64)",
    description=(
        "range(N) read ahead by a task into a 64-item buffer, every item collected;"
        " reference: producer task + memory channel(64) with the nowait fast paths"
    ),
    items=200_000,
    smoke_items=2_000,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender(
            "hand-written channel(64), nowait, async for",
            load_item_by_item,
            note="item by item, checkpoint_if_cancelled per anext",
        ),
        Contender(
            "hand-written channel(64), naive",
            load_naive,
            note="await send / async for",
        ),
        Contender("beluga .buffer(64).collect()", load_beluga_collect, goal=1.25),
        Contender("beluga .buffer(64) open() + async for", load_beluga_open, goal=1.25),
    ),
    expected=expected,
)
