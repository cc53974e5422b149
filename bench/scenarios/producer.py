"""Scenario "producer hand-off": items from a generator body that runs in its own task.

The producer is an async generator body yielding ``range(N)`` with no awaits; the consumer
takes every item. Each contender hands items from the producer to the consumer its own way;
the reference is trio's ``as_safe_channel`` (lock-step, a task and a channel behind it).
Each item costs microseconds here (task switches), so N is smaller than in other scenarios.
"""

from __future__ import annotations

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Scenario
from bench._peers import trio_util_async_generator
from bench.scenarios._common import Sources


def expected(n: int) -> list[int]:
    return list(range(n))


def load_reference() -> Job:
    produce = trio.as_safe_channel(Sources.count)

    async def job(n: int) -> list[int]:
        async with produce(n) as items:
            return [x async for x in items]

    return job


def load_beluga_collect() -> Job:
    produce = bt.stream(Sources.count)

    async def job(n: int) -> list[int]:
        return await produce(n).collect()

    return job


def load_beluga_open() -> Job:
    produce = bt.stream(Sources.count)

    async def job(n: int) -> list[int]:
        async with produce(n).open() as items:
            return [x async for x in items]

    return job


def load_trio_util() -> Job:
    produce = trio_util_async_generator()(Sources.count)

    async def job(n: int) -> list[int]:
        async with produce(n) as items:
            return [x async for x in items]

    return job


REFERENCE = "trio.as_safe_channel"

SCENARIO = Scenario(
    name="producer hand-off",
    description=(
        "an async generator body yielding range(N) (no awaits), every item taken by the"
        " consumer; reference: trio.as_safe_channel on the same body"
    ),
    items=50_000,
    smoke_items=1_000,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender("beluga @stream .collect()", load_beluga_collect, goal=0.7),
        Contender("beluga @stream open() + async for", load_beluga_open, goal=0.7),
        Contender(
            "trio_util trio_async_generator",
            load_trio_util,
            note="peer, runs one item ahead",
        ),
    ),
    expected=expected,
)
