"""Scenario "fan_out(3)": one source read once, every item seen by three consumer tasks.

The source is ``range(N)`` (synchronous); three consumers each fold their view into a sum
with ``operator.add``, once per item, so every contender's consumers do the same work per
item: beluga's consumers call ``view.reduce(operator.add, 0)``, the hand-written and the
peer's consumers compute ``acc = add(acc, x)`` in their loop.

Reference: the same job hand-written, a distributor task feeding three memory channels and
three consumer tasks, with the nowait fast paths on both sides (``send_nowait`` first;
consumers drain with ``receive_nowait``). Its channels hold 1024 items, the same as
``fan_out``'s default buffer per consumer, so both hold the same amount in flight; a second
row uses channels(64), the size docs/design.md measured (~1,430 ns/item). Also the naive version
(``await send`` / ``async for``, docs/design.md: ~25,200), and the peer asyncstdlib ``tee(n=3,
lock=trio.Lock())`` with a task per consumer (docs/design.md: ~24,800), and slurry, in its own
interpreter when one is given (see :mod:`bench._slurry`): three ``tap()`` of one pipeline, a
consumer task each; the pipeline starts a task per item per tap, with no backpressure
(docs/design.md: ~82,000; some 2 GB at N=200,000).
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

import beluga_trio as bt
from bench import _slurry
from bench._harness import Contender, Job, Scenario
from bench._peers import asyncstdlib_tee
from bench.scenarios._common import Sources

CONSUMERS = 3
BUFFER = 1024  # fan_out's default buffer per consumer
COST_TABLE_BUFFER = 64  # the channel size of the fan-out rows in docs/design.md, "What things cost"

add = operator.add


def expected(n: int) -> list[int]:
    return [sum(range(n))] * CONSUMERS


# Hand-written -------------------------------------------------------------------------------


async def distribute_nowait(n: int, txs: list[trio.MemorySendChannel[int]]) -> None:
    """The distributor: every item of ``range(n)`` to every channel, ``send_nowait`` first and
    ``await send`` only when that channel is full; closes every channel."""
    try:
        for x in range(n):
            for tx in txs:
                try:
                    tx.send_nowait(x)
                except trio.WouldBlock:
                    await tx.send(x)  # the slowest consumer sets the pace
    finally:
        for tx in txs:
            tx.close()


async def sum_nowait(rx: trio.MemoryReceiveChannel[int], results: list[int], index: int) -> None:
    """A consumer: sums its channel's items (drained with ``receive_nowait``, ``await receive``
    only when empty) into ``results[index]``; closes its channel."""
    acc = 0
    receive_nowait = rx.receive_nowait
    async with rx:
        while True:
            try:
                while True:
                    acc = add(acc, receive_nowait())
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                break
            try:
                acc = add(acc, await rx.receive())
            except trio.EndOfChannel:
                break
    results[index] = acc


async def _distribute_naive(n: int, txs: list[trio.MemorySendChannel[int]]) -> None:
    try:
        for x in range(n):
            for tx in txs:
                await tx.send(x)
    finally:
        for tx in txs:
            tx.close()


async def _sum_naive(rx: trio.MemoryReceiveChannel[int], results: list[int], index: int) -> None:
    acc = 0
    async with rx:
        async for x in rx:
            acc = add(acc, x)
    results[index] = acc


def _hand_written(
    distribute: Callable[[int, list[trio.MemorySendChannel[int]]], Awaitable[object]],
    consume: Callable[[trio.MemoryReceiveChannel[int], list[int], int], Awaitable[object]],
    buffer: int,
) -> Job:
    async def job(n: int) -> list[int]:
        results = [0] * CONSUMERS
        channels = [trio.open_memory_channel[int](buffer) for _ in range(CONSUMERS)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(distribute, n, [tx for tx, _ in channels])
            for index, (_, rx) in enumerate(channels):
                nursery.start_soon(consume, rx, results, index)
        return results

    return job


def load_reference() -> Job:
    return _hand_written(distribute_nowait, sum_nowait, BUFFER)


def load_reference_64() -> Job:
    return _hand_written(distribute_nowait, sum_nowait, COST_TABLE_BUFFER)


def load_naive() -> Job:
    return _hand_written(_distribute_naive, _sum_naive, BUFFER)


# beluga_trio and the peer -------------------------------------------------------------------


async def _beluga_sum(view: bt.Stream[int]) -> int:
    return await view.reduce(add, 0)


def load_beluga() -> Job:
    async def job(n: int) -> list[int]:
        source = bt.from_iterable(range(n))
        return await bt.fan_out(source, _beluga_sum, _beluga_sum, _beluga_sum)

    return job


def load_asyncstdlib() -> Job:
    tee = asyncstdlib_tee()

    async def consume(child: AsyncIterator[int], results: list[int], index: int) -> None:
        acc = 0
        async for x in child:
            acc = add(acc, x)
        results[index] = acc

    async def job(n: int) -> list[int]:
        results = [0] * CONSUMERS
        children = tee(Sources.count(n), n=CONSUMERS, lock=trio.Lock())
        try:
            async with trio.open_nursery() as nursery:
                for index, child in enumerate(children):
                    nursery.start_soon(consume, child, results, index)
        finally:
            await children.aclose()
        return results

    return job


REFERENCE = "hand-written 3 channels(1024), nowait"

SCENARIO = Scenario(
    name="fan_out(3)",
    description=(
        "range(N) read once, every item summed by each of 3 consumer tasks;"
        " reference: distributor task + 3 memory channels(1024) with the nowait fast paths"
    ),
    items=200_000,
    smoke_items=2_000,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference, note="same buffer as fan_out's default"),
        Contender(
            "hand-written 3 channels(64), nowait",
            load_reference_64,
            note="the buffer size of the cost table in docs/design.md",
        ),
        Contender(
            "hand-written 3 channels(1024), naive", load_naive, note="await send / async for"
        ),
        Contender("beluga fan_out(s, c, c, c)", load_beluga, goal=1.5, note="capacity=1024"),
        Contender("asyncstdlib tee(n=3, lock)", load_asyncstdlib, note="peer, a task per consumer"),
        _slurry.contender("slurry tap() x3", "fan_out3", note="peer, a task per item per tap"),
    ),
    expected=expected,
)
