"""Scenario "inline chain": a source and three cheap synchronous map stages, collected.

Reference: the hand-written floor, a plain async-generator source and three async-generator
map stages consumed by an async comprehension inside trio (no checkpoints at all). Every
contender does the same work on the same items and returns the list, which is checked.

slurry (a peer that pins an old trio) runs in its own interpreter when one is given (see
:mod:`bench._slurry`): ``Pipeline.create(source, Map(f1), Map(f2), Map(f3))``, a task per
section, read through one ``tap()``.

Item-by-item contenders consume with ``[x async for x in it]``, exactly as the reference does,
so that the comparison is about the pipeline and not about the consumer's loop.
"""

from __future__ import annotations

from contextlib import aclosing

import beluga_trio as bt
from bench import _slurry
from bench._harness import Contender, Job, Scenario
from bench._peers import aiostream_operators, asyncstdlib_map
from bench.scenarios._common import Sources, amap


def f1(x: int) -> int:
    return x + 1


def f2(x: int) -> int:
    return x * 2


def f3(x: int) -> int:
    return x - 3


def expected(n: int) -> list[int]:
    return [f3(f2(f1(i))) for i in range(n)]


def load_reference() -> Job:
    async def job(n: int) -> list[int]:
        chain = amap(f3, amap(f2, amap(f1, Sources.count(n))))
        async with aclosing(chain) as items:
            return [x async for x in items]

    return job


def load_beluga_collect() -> Job:
    async def job(n: int) -> list[int]:
        return await bt.from_iterable(range(n)).map(f1).map(f2).map(f3).collect()

    return job


def load_beluga_open() -> Job:
    async def job(n: int) -> list[int]:
        stream = bt.from_iterable(range(n)).map(f1).map(f2).map(f3)
        async with stream.open() as items:
            return [x async for x in items]

    return job


def load_asyncstdlib() -> Job:
    amap_ = asyncstdlib_map()

    async def job(n: int) -> list[int]:
        chain = amap_(f3, amap_(f2, amap_(f1, Sources.count(n))))
        async with aclosing(chain) as items:
            return [x async for x in items]

    return job


def load_aiostream() -> Job:
    stream = aiostream_operators()

    async def job(n: int) -> list[int]:
        chain = stream.map(stream.map(stream.map(stream.iterate(Sources.count(n)), f1), f2), f3)
        async with chain.stream() as items:
            return [x async for x in items]

    return job


REFERENCE = "async-gen chain (hand-written)"

SCENARIO = Scenario(
    name="inline chain",
    description=(
        "source + map(f1).map(f2).map(f3) over range(N) with cheap sync functions, collected;"
        " reference: plain async-generator stages, no checkpoints"
    ),
    items=200_000,
    smoke_items=2_000,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender("beluga .collect()", load_beluga_collect, goal=1.0),
        Contender("beluga open() + async for", load_beluga_open, goal=1.0),
        Contender("asyncstdlib a.map x3", load_asyncstdlib, note="peer"),
        Contender(
            "aiostream map x3",
            load_aiostream,
            loop="asyncio",
            note="peer, on asyncio",
        ),
        _slurry.contender("slurry Map x3 + tap", "map3"),
    ),
    expected=expected,
)
