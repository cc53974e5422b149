"""Scenario "peak memory, slow consumer": fan-out to two consumers, one of which lags.

The source is ``range(N)``; one consumer sums its items as fast as it can, the other sums
them too but passes a schedule point (``trio.sleep(0)``) after every ``LAG_EVERY``-th item,
so it is the slower of the two and sets the pace wherever there is backpressure.

Measured: the peak memory Python allocates during the job (tracemalloc, untimed, see
:mod:`bench._memory`) at 100k and at 1M items. A bounded fan-out holds at most its buffers
whatever the length, so its peak does not grow (goal: 1M/100k within 1.10x); an unbounded
one keeps every item the fast consumer has taken and the slow one has not yet seen.

Contenders: beluga ``fan_out`` (buffer 1024 per consumer, its default); the hand-written
distributor with two channels(1024) and the nowait fast paths (bounded, for reference); and
asyncstdlib ``tee(n=2)`` with a task per consumer, the unbounded peer: without a lock its
fast child never yields to the scheduler, so it takes the whole source before the slow
child starts and the tee holds every item (docs/design.md: ~153 MB of resident memory at 1M).
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator

import trio

import beluga_trio as bt
from bench._harness import Contender, Job
from bench._memory import MemoryScenario
from bench._peers import asyncstdlib_tee
from bench.scenarios._common import Sources

LAG_EVERY = 4  # the slow consumer yields (sleep 0) after every LAG_EVERY-th item
BUFFER = 1024

add = operator.add


def expected(n: int) -> list[int]:
    return [sum(range(n))] * 2


async def _fast_sum(items: AsyncIterator[int]) -> int:
    acc = 0
    async for x in items:
        acc = add(acc, x)
    return acc


async def _slow_sum(items: AsyncIterator[int]) -> int:
    acc = 0
    async for x in items:
        acc = add(acc, x)
        if x % LAG_EVERY == 0:
            await trio.lowlevel.checkpoint()  # = trio.sleep(0)
    return acc


# beluga --------------------------------------------------------------------------------------


async def _beluga_fast(view: bt.Stream[int]) -> int:
    return await view.reduce(add, 0)


async def _beluga_slow(view: bt.Stream[int]) -> int:
    async with view.open() as items:
        return await _slow_sum(items)


def load_beluga() -> Job:
    async def job(n: int) -> list[int]:
        return await bt.fan_out(bt.from_iterable(range(n)), _beluga_fast, _beluga_slow)

    return job


# hand-written --------------------------------------------------------------------------------


async def _distribute(n: int, txs: list[trio.MemorySendChannel[int]]) -> None:
    try:
        for x in range(n):
            for tx in txs:
                try:
                    tx.send_nowait(x)
                except trio.WouldBlock:
                    await tx.send(x)
    finally:
        for tx in txs:
            tx.close()


async def _fast_nowait(rx: trio.MemoryReceiveChannel[int], results: list[int]) -> None:
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
    results[0] = acc


async def _slow_nowait(rx: trio.MemoryReceiveChannel[int], results: list[int]) -> None:
    # Takes ready items with receive_nowait, as beluga's iterator does; yields as _slow_sum.
    acc = 0
    receive_nowait = rx.receive_nowait
    async with rx:
        while True:
            try:
                x = receive_nowait()
            except trio.WouldBlock:
                try:
                    x = await rx.receive()
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
            acc = add(acc, x)
            if x % LAG_EVERY == 0:
                await trio.lowlevel.checkpoint()  # = trio.sleep(0)
    results[1] = acc


def load_hand_written() -> Job:
    async def job(n: int) -> list[int]:
        results = [0, 0]
        (fast_tx, fast_rx), (slow_tx, slow_rx) = (
            trio.open_memory_channel[int](BUFFER) for _ in range(2)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_distribute, n, [fast_tx, slow_tx])
            nursery.start_soon(_fast_nowait, fast_rx, results)
            nursery.start_soon(_slow_nowait, slow_rx, results)
        return results

    return job


# asyncstdlib ---------------------------------------------------------------------------------


def load_asyncstdlib() -> Job:
    tee = asyncstdlib_tee()

    async def job(n: int) -> list[int]:
        results = [0, 0]
        children = tee(Sources.count(n), n=2)
        fast, slow = children

        async def run_fast() -> None:
            results[0] = await _fast_sum(fast)

        async def run_slow() -> None:
            results[1] = await _slow_sum(slow)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_fast)
                nursery.start_soon(run_slow)
        finally:
            await children.aclose()
        return results

    return job


SCENARIO = MemoryScenario(
    name="peak memory, slow consumer",
    description=(
        f"fan-out of range(N) to 2 summing consumers, one sleeping 0 every {LAG_EVERY} items;"
        " peak traced memory at 100k and 1M items (goal: flat, within 1.10x)"
    ),
    sizes=(100_000, 1_000_000),
    smoke_sizes=(2_000, 20_000),
    contenders=(
        Contender("beluga fan_out(s, fast, slow)", load_beluga, goal=1.10, note="capacity=1024"),
        Contender("hand-written 2 channels(1024), nowait", load_hand_written, note="bounded"),
        Contender("asyncstdlib tee(n=2)", load_asyncstdlib, note="peer, unbounded"),
    ),
    expected=expected,
)
