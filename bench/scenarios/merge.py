"""Scenario "merge(3)": three sources read at once, items in arrival order, all collected.

The sources are three synchronous ranges of N/3 items each (``range(N)`` cut in three), read
by a task each into one channel of 64. Reference: the same job hand-written, a nursery with
three producer tasks and one ``trio.open_memory_channel(64)``, nowait fast paths on both sides
(docs/design.md: ~700 ns/item); also the naive version (``await send`` / ``async for``,
docs/design.md: ~8,400). Peer: aiostream's ``stream.merge`` on asyncio, over async-generator sources
that never await (a sync iterable would cost aiostream an extra ``asyncio.sleep(0)`` per item).

slurry, in its own interpreter when one is given (see :mod:`bench._slurry`):
``Pipeline.create(Merge(a, b, c))`` over the same async-generator sources, read through one
``tap()`` (docs/design.md: ~43,300).

The check: the items, sorted, are exactly ``range(N)``, and each source's items arrive in
that source's order.
"""

from __future__ import annotations

from typing import cast

import trio

import beluga_trio as bt
from bench import _slurry
from bench._harness import Contender, Job, Scenario
from bench._peers import aiostream_operators
from bench.scenarios._common import (
    Sources,
    receive_all_naive,
    receive_all_nowait,
    send_all_naive,
    send_all_nowait,
    split,
)

SOURCES = 3
CAPACITY = 64


def expected(n: int) -> list[range]:
    return split(n, SOURCES)


def check(got: object, expected: object) -> str | None:
    """None when ``got`` is an interleaving of the expected ranges, each kept in order."""
    sources = cast("list[range]", expected)
    if not isinstance(got, list):
        return f"got a {type(got).__name__}, not a list"
    items = cast("list[int]", got)
    total = sum(len(r) for r in sources)
    if len(items) != total:
        return f"{len(items)} items instead of {total}"
    if sorted(items) != list(range(total)):
        return "the items are not the expected multiset"
    for index, source in enumerate(sources):
        seen = [x for x in items if x in source]
        if seen != list(source):
            return f"source {index}'s items arrived out of their order"
    return None


def load_reference() -> Job:
    async def job(n: int) -> list[int]:
        items: list[int] = []
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            async with tx:
                for source in split(n, SOURCES):
                    nursery.start_soon(send_all_nowait, source, tx.clone())
            await receive_all_nowait(rx, items.append)
        return items

    return job


def load_naive() -> Job:
    async def job(n: int) -> list[int]:
        items: list[int] = []
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            async with tx:
                for source in split(n, SOURCES):
                    nursery.start_soon(send_all_naive, source, tx.clone())
            await receive_all_naive(rx, items.append)
        return items

    return job


def load_beluga() -> Job:
    async def job(n: int) -> list[int]:
        a, b, c = (bt.from_iterable(r) for r in split(n, SOURCES))
        return await bt.merge(a, b, c).collect()

    return job


def load_aiostream() -> Job:
    stream = aiostream_operators()

    async def job(n: int) -> list[int]:
        a, b, c = (stream.iterate(Sources.span(r.start, r.stop)) for r in split(n, SOURCES))
        async with stream.merge(a, b, c).stream() as items:
            return [x async for x in items]

    return job


REFERENCE = "hand-written nursery + channel(64), nowait"

SCENARIO = Scenario(
    name="merge(3)",
    description=(
        "three sync sources of N/3 items each, read at once, every item collected;"
        " reference: 3 producer tasks + one memory channel(64) with the nowait fast paths"
    ),
    items=200_000,
    smoke_items=3_000,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender(
            "hand-written nursery + channel(64), naive",
            load_naive,
            note="await send / async for",
        ),
        Contender("beluga merge(a, b, c).collect()", load_beluga, goal=1.25),
        Contender(
            "aiostream stream.merge", load_aiostream, loop="asyncio", note="peer, on asyncio"
        ),
        _slurry.contender("slurry Merge + tap", "merge3"),
    ),
    expected=expected,
    check=check,
)
