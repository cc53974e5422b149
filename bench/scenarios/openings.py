"""Scenario "memory per opening": N openings of a producer held open at once, each having
handed over its first item; the peak memory per opening.

A ``@bt.stream`` producer runs its body in a task of its own, in a nursery of the opening:
every opening held open costs that task, its frames, the nursery and beluga's own objects. The
job opens N of them one after the other in one task (an ``AsyncExitStack``), takes the first
item of each (so each producer has started and is parked at its first ``yield``), then closes
them all. Measured (untimed, tracemalloc, see :mod:`bench._memory`): the peak memory Python
allocates during the job, divided by N, at N = 1,000 and 10,000 openings (large/small: does
the cost per opening stay flat?).

Reference: the same hand-written, an async context manager that opens a nursery, starts a
producer task sending into ``trio.open_memory_channel(0)`` (lock-step, as ``@stream``) and
yields the receiving end; it cancels the producer when it is left. Also trio's own
``as_safe_channel`` on the same body. Every producer's body is the same async generator over
``range(1000)`` that never awaits. Issue 18: goal for beluga, at most 1.1x the hand-written
cost per opening. The check: every first item is 0.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import trio

import beluga_trio as bt
from bench._harness import Contender, Job
from bench._memory import MemoryScenario
from bench.scenarios._common import Sources

LENGTH = 1_000  # items each producer could yield; only the first is taken


def expected(n: int) -> list[int]:
    return [0] * n


async def _first_items(
    open_one: Callable[[], AbstractAsyncContextManager[AsyncIterator[int]]], n: int
) -> list[int]:
    """Open ``n`` producers at once, the first item of each taken; then close them all."""
    firsts: list[int] = []
    async with AsyncExitStack() as stack:
        for _ in range(n):
            items = await stack.enter_async_context(open_one())
            firsts.append(await anext(items))
    return firsts


async def _send_all(tx: trio.MemorySendChannel[int]) -> None:
    async with tx:
        async for x in Sources.count(LENGTH):
            await tx.send(x)


@asynccontextmanager
async def _hand_written() -> AsyncGenerator[trio.MemoryReceiveChannel[int], None]:
    # An async context manager may hold a nursery across its yield: it is entered and left in
    # the same task (unlike an async generator iterated by its consumer).
    tx, rx = trio.open_memory_channel[int](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_all, tx)
        async with rx:
            yield rx
            nursery.cancel_scope.cancel()


def load_hand_written() -> Job:
    async def job(n: int) -> list[int]:
        return await _first_items(_hand_written, n)

    return job


def load_as_safe_channel() -> Job:
    produce = trio.as_safe_channel(Sources.count)

    async def job(n: int) -> list[int]:
        return await _first_items(lambda: produce(LENGTH), n)

    return job


def load_beluga() -> Job:
    produce = bt.stream(Sources.count)

    async def job(n: int) -> list[int]:
        return await _first_items(lambda: produce(LENGTH).open(), n)

    return job


REFERENCE = "hand-written nursery + task + channel(0)"

SCENARIO = MemoryScenario(
    name="memory per opening",
    description=(
        "N @stream producers held open at once, the first item of each taken; peak traced"
        " memory / N at 1,000 and 10,000 openings; reference: a nursery + producer task +"
        " memory channel(0) per opening (goal for beluga: within 1.10x)"
    ),
    sizes=(1_000, 10_000),
    smoke_sizes=(50, 500),
    contenders=(
        Contender(REFERENCE, load_hand_written, note="lock-step"),
        Contender("trio.as_safe_channel", load_as_safe_channel, note="lock-step"),
        Contender("beluga @stream open()", load_beluga, goal=1.10),
    ),
    expected=expected,
    per="opening",
    reference=REFERENCE,
)
