"""Scenario "time to first item": open a 5-stage pipeline, take its first item, stop it.

Each run builds the pipeline, takes the first item and closes everything (the producer is
stopped at once); the job is many runs in a row inside one event loop, and the table shows
microseconds per run. The producer yields its first item immediately; the five stages are
cheap synchronous maps.

Reference: a hand-written chain of plain async generators (a source and five map stages),
the first item taken with ``anext`` and the chain closed with ``aclose``: no task at all.
beluga's ``@stream`` producer runs in its own task (that is its point), so it pays for a
nursery and a task per run; ``trio.as_safe_channel`` (also a task) under the same chain shows
what that costs elsewhere. ``bt.from_iterable`` is beluga's taskless source, for comparison.
"""

from __future__ import annotations

from contextlib import aclosing

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Scenario
from bench._peers import aiostream_operators, asyncstdlib_map
from bench.scenarios._common import Sources, amap

ENDLESS = 10**12  # the producer's nominal length: only its first item is ever taken


def f1(x: int) -> int:
    return x + 1


def f2(x: int) -> int:
    return x * 2


def f3(x: int) -> int:
    return x - 3


def f4(x: int) -> int:
    return x * 5


def f5(x: int) -> int:
    return x + 7


FIRST = f5(f4(f3(f2(f1(0)))))


def expected(runs: int) -> list[int]:
    return [FIRST] * runs


def load_reference() -> Job:
    async def job(runs: int) -> list[int]:
        firsts: list[int] = []
        for _ in range(runs):
            chain = amap(f5, amap(f4, amap(f3, amap(f2, amap(f1, Sources.count(ENDLESS))))))
            async with aclosing(chain) as items:
                firsts.append(await anext(items))
        return firsts

    return job


def load_beluga_stream() -> Job:
    produce = bt.stream(Sources.count)

    async def job(runs: int) -> list[int]:
        return [
            await produce(ENDLESS).map(f1).map(f2).map(f3).map(f4).map(f5).first()
            for _ in range(runs)
        ]

    return job


def load_beluga_iterable() -> Job:
    async def job(runs: int) -> list[int]:
        return [
            await bt.from_iterable(range(ENDLESS)).map(f1).map(f2).map(f3).map(f4).map(f5).first()
            for _ in range(runs)
        ]

    return job


def load_as_safe_channel() -> Job:
    produce = trio.as_safe_channel(Sources.count)

    async def job(runs: int) -> list[int]:
        firsts: list[int] = []
        for _ in range(runs):
            async with produce(ENDLESS) as source:
                chain = amap(f5, amap(f4, amap(f3, amap(f2, amap(f1, aiter(source))))))
                async with aclosing(chain) as items:
                    firsts.append(await anext(items))
        return firsts

    return job


def load_asyncstdlib() -> Job:
    amap_ = asyncstdlib_map()

    async def job(runs: int) -> list[int]:
        firsts: list[int] = []
        for _ in range(runs):
            source = Sources.count(ENDLESS)
            chain = amap_(f5, amap_(f4, amap_(f3, amap_(f2, amap_(f1, source)))))
            async with aclosing(chain) as items:
                firsts.append(await anext(items))
            await source.aclose()
        return firsts

    return job


def load_aiostream() -> Job:
    stream = aiostream_operators()

    async def job(runs: int) -> list[int]:
        firsts: list[int] = []
        for _ in range(runs):
            chain = stream.iterate(Sources.count(ENDLESS))
            for fn in (f1, f2, f3, f4, f5):
                chain = stream.map(chain, fn)
            async with chain.stream() as items:
                firsts.append(await anext(items))
        return firsts

    return job


REFERENCE = "async-gen chain (hand-written)"

SCENARIO = Scenario(
    name="time to first item, 5 stages",
    description=(
        "build a producer + 5 sync map stages, take the first item, stop; microseconds per"
        " run; reference: a hand-written async-generator chain (no task)"
    ),
    items=5_000,
    smoke_items=200,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference, note="no task"),
        Contender("beluga @stream ... .first()", load_beluga_stream, note="producer in a task"),
        Contender("beluga from_iterable ... .first()", load_beluga_iterable, note="no task"),
        Contender(
            "trio.as_safe_channel + async-gen chain",
            load_as_safe_channel,
            note="producer in a task",
        ),
        Contender("asyncstdlib a.map x5", load_asyncstdlib, note="peer"),
        Contender("aiostream map x5", load_aiostream, loop="asyncio", note="peer, on asyncio"),
    ),
    expected=expected,
    unit="us/run",
)
