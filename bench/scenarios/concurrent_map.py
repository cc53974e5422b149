"""Scenario "concurrent map over I/O": M calls that each wait ``LATENCY`` seconds, at most C
at once, results in input order.

``io_call(x)`` awaits ``trio.sleep(LATENCY)`` (``asyncio.sleep`` for the asyncio peer) and
returns ``2 * x``; the real clock runs. With no overhead at all the job would take
``M x LATENCY / C`` (the "ideal"); the table shows each contender's time over it. The values
are chosen so the figure means something on 2 shared cores.

Besides the latency, each call costs CPU time (a task, a timer, the bookkeeping: ~33 us for
the hand-written version here, measured with ``time.process_time``). The calls run in waves
of C that wake together, and the last call of a wave is restarted only after the other C-1
have been handled, so a wave lasts about ``LATENCY + C x cpu_per_call``: at 5 ms and C=50,
5 ms + 50 x 33 us, ~1.3x the ideal (plus ~4% because epoll rounds timeouts up to whole
milliseconds), with the loop busy only a quarter of the time. At a 1 ms latency the same
arithmetic gives ~2.7x and the job is CPU-bound: it would measure the per-call CPU cost, not
the overlap of waits.

Reference: hand-written trio, a nursery with a task per call and a ``trio.Semaphore(C)``
acquired before each call is started (so at most C tasks exist) and released when it ends.
Peer: aiostream ``stream.map(xs, io_call, task_limit=C)`` (``xs | pipe.map(...)``) on
asyncio, ordered.

Scenarios "concurrent map at scale, C=100" and "C=1,000" (issue 10): the same job with 1 ms
calls at concurrency 100 and 1,000, where the loop is CPU-bound and the figure is the cost of
the machinery per call: beluga, ordered and unordered, against the same hand-written nursery +
``Semaphore(C)``; goal 1.1x.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Scenario
from bench._peers import aiostream_operators

LATENCY = 0.005  # seconds per call
CONCURRENCY = 50
SCALE_LATENCY = 0.001  # seconds per call, at scale


IoCall = Callable[[int], Awaitable[int]]


async def io_call(x: int) -> int:
    await trio.sleep(LATENCY)
    return 2 * x


async def io_call_1ms(x: int) -> int:
    await trio.sleep(SCALE_LATENCY)
    return 2 * x


async def asyncio_io_call(x: int) -> int:
    await asyncio.sleep(LATENCY)
    return 2 * x


def expected(m: int) -> list[int]:
    return [2 * x for x in range(m)]


def ideal_ns(m: int) -> float:
    return m * LATENCY / CONCURRENCY * 1e9


def load_reference(concurrency: int = CONCURRENCY, call: IoCall = io_call) -> Job:
    async def job(m: int) -> list[int]:
        results = [0] * m
        slots = trio.Semaphore(concurrency)

        async def one(i: int) -> None:
            try:
                results[i] = await call(i)
            finally:
                slots.release()

        async with trio.open_nursery() as nursery:
            for i in range(m):
                await slots.acquire()
                nursery.start_soon(one, i)
        return results

    return job


def load_beluga() -> Job:
    async def job(m: int) -> list[int]:
        return await bt.from_iterable(range(m)).map(io_call, concurrency=CONCURRENCY).collect()

    return job


def load_aiostream() -> Job:
    stream = aiostream_operators()

    async def job(m: int) -> list[int]:
        calls = stream.map(stream.iterate(range(m)), asyncio_io_call, task_limit=CONCURRENCY)
        async with calls.stream() as items:
            return [x async for x in items]

    return job


REFERENCE = "hand-written nursery + Semaphore"

SCENARIO = Scenario(
    name="concurrent map over I/O",
    description=(
        f"M calls of an async fn awaiting sleep({LATENCY}) (real clock), at most"
        f" {CONCURRENCY} at once, results in order; x ideal = time / (M x latency /"
        " concurrency); reference: hand-written nursery + Semaphore"
    ),
    items=2_000,
    smoke_items=100,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender(
            f"beluga .map(io, concurrency={CONCURRENCY}).collect()",
            load_beluga,
            note="ordered",
        ),
        Contender(
            f"aiostream map(io, task_limit={CONCURRENCY})",
            load_aiostream,
            loop="asyncio",
            note="peer, on asyncio, ordered",
        ),
    ),
    expected=expected,
    unit="us/item",
    ideal_ns=ideal_ns,
    ideal_note=f"{LATENCY * 1000:g} ms x M / {CONCURRENCY}",
)


def _at_scale(concurrency: int, items: int, smoke_items: int) -> Scenario:
    def load_ordered() -> Job:
        async def job(m: int) -> list[int]:
            s = bt.from_iterable(range(m)).map(io_call_1ms, concurrency=concurrency)
            return await s.collect()

        return job

    def load_unordered() -> Job:
        async def job(m: int) -> list[int]:
            s = bt.from_iterable(range(m)).map(io_call_1ms, concurrency=concurrency, ordered=False)
            return sorted(await s.collect())

        return job

    reference = f"hand-written nursery + Semaphore({concurrency:,})"
    return Scenario(
        name=f"concurrent map at scale, C={concurrency:,}",
        description=(
            f"M calls of an async fn awaiting sleep({SCALE_LATENCY}) (real clock), at most"
            f" {concurrency:,} at once: CPU-bound, so the figure is the cost of the machinery"
            " per call; reference: hand-written nursery + Semaphore"
        ),
        items=items,
        smoke_items=smoke_items,
        reference=reference,
        contenders=(
            Contender(reference, lambda: load_reference(concurrency, io_call_1ms)),
            Contender(
                f"beluga .map(io, concurrency={concurrency:,}).collect()",
                load_ordered,
                goal=1.1,
                note="ordered",
            ),
            Contender(
                f"beluga .map(io, concurrency={concurrency:,}, ordered=False).collect()",
                load_unordered,
                goal=1.1,
                note="unordered; sorted in the job (nearly sorted: ~0.1% of it)",
            ),
        ),
        expected=expected,
        unit="us/item",
        ideal_ns=lambda m: m * SCALE_LATENCY / concurrency * 1e9,
        ideal_note=f"{SCALE_LATENCY * 1000:g} ms x M / {concurrency:,}",
    )


AT_100 = _at_scale(100, items=5_000, smoke_items=200)
AT_1000 = _at_scale(1_000, items=20_000, smoke_items=2_000)
