"""Scenario "memory per opening, one shared nursery": N streams open at once, each advanced
one item and held; the memory per opening against the leanest hand-written shape.

The body is the same async generator for both contenders (`Sources.count`, yielding
``range(2)``), and in both one task, the benchmark's, is the consumer of all N openings, so
that what is counted is what an opening costs, not a consumer task of its own:

- beluga: one ``@bt.stream`` stream opened N times, each with ``async with s.open() as it``
  (entered on one `contextlib.AsyncExitStack`), advanced with ``await anext(it)`` and held
  open until all N are; each opening owns a nursery, its lock-step producer task and its
  iterator;
- hand-written: the ``trio.as_safe_channel`` shape without its nursery per call: ONE nursery
  shared by all N, and per opening a task running the generator (``aclosing``) and sending
  its items over a ``trio.open_memory_channel(0)`` whose receiving end the consumer holds. It
  receives one item from each, then closes the receiving ends one by one; each producer
  leaves at its pending ``send`` (`trio.BrokenResourceError`, caught) and closes its
  generator, so the teardown raises one exception at a time, as beluga's does.

Measured: the peak memory Python allocates during the job (tracemalloc, untimed, see
:mod:`bench._memory`) at 1,000 and 10,000 openings: divided by N, the bytes per opening
(issue 18: beluga's at most 1.10x the hand-written's). A nursery per opening, which beluga
needs (the opening owns its tasks), is not in the reference; ``memory per opening`` measures
against a hand-written nursery + task + channel(0) per opening.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing

import trio

import beluga_trio as bt
from bench._harness import Contender, Job
from bench._memory import MemoryScenario
from bench.scenarios._common import Sources

ITEMS = 2  # what each body could yield; one is taken


def expected(n: int) -> int:
    return n  # every opening gave its first item, 0


def load_beluga() -> Job:
    produce = bt.stream(Sources.count)

    async def job(n: int) -> int:
        s = produce(ITEMS)
        got = 0
        async with AsyncExitStack() as stack:
            for _ in range(n):
                it = await stack.enter_async_context(s.open())
                got += 1 + await anext(it)
        return got

    return job


async def _produce(tx: trio.MemorySendChannel[int], items: AsyncGenerator[int, None]) -> None:
    async with tx, aclosing(items):
        try:
            async for item in items:
                await tx.send(item)
        except trio.BrokenResourceError:
            pass  # the consumer closed its end: this opening is left


def load_hand_written() -> Job:
    async def job(n: int) -> int:
        got = 0
        async with trio.open_nursery() as nursery:
            receivers: list[trio.MemoryReceiveChannel[int]] = []
            for _ in range(n):
                tx, rx = trio.open_memory_channel[int](0)
                nursery.start_soon(_produce, tx, Sources.count(ITEMS))
                receivers.append(rx)
            for rx in receivers:
                got += 1 + await rx.receive()
            for rx in receivers:
                rx.close()
        return got

    return job


SCENARIO = MemoryScenario(
    name="memory per opening, one shared nursery",
    description=(
        "N @stream openings held open at once, each advanced one item; peak traced memory at"
        " 1,000 and 10,000 openings (/ N = per opening) vs a task + channel(0) each in one"
        " shared nursery (issue 18: beluga per opening <= 1.10x)"
    ),
    sizes=(1_000, 10_000),
    smoke_sizes=(100, 1_000),
    contenders=(
        Contender("hand-written task + channel(0) each", load_hand_written, note="one nursery"),
        Contender("beluga @stream open() each", load_beluga),
    ),
    expected=expected,
)
