"""Scenario "memory per opening": N streams open at once, each advanced one item and held.

The body is the same async generator for both contenders (`Sources.count`, yielding
``range(2)``), and in both one task, the benchmark's, is the consumer of all N openings, so
that what is counted is what an opening costs, not a consumer task of its own:

- beluga: one ``@bt.stream`` stream opened N times, each with ``async with s.open() as it``
  (entered on one `contextlib.AsyncExitStack`), advanced with ``await anext(it)`` and held
  open until all N are; each opening owns its nursery, its lock-step producer task and its
  iterator;
- hand-written: the ``trio.as_safe_channel`` shape without its per-call nursery: one shared
  nursery, and per opening a task running the generator (``aclosing``) and sending its items
  over a ``trio.open_memory_channel(0)``, whose receiving end the consumer holds; it receives
  one item from each, then cancels the nursery.

Measured: the memory Python has allocated (tracemalloc, untimed, see :mod:`bench._memory`)
at the moment all N are open and advanced (`bench._memory.mark_held`: not the peak, which
the hand-written teardown, N `trio.Cancelled` raised at once, would dominate), at 1,000 and
10,000 openings, divided by N in the notes: bytes per opening, and beluga's against the
hand-written's (goal: at most 1.10x at 10,000).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, aclosing

import trio

import beluga_trio as bt
from bench._harness import Contender, Job
from bench._memory import MemoryScenario, mark_held
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
            mark_held()
        return got

    return job


async def _produce(tx: trio.MemorySendChannel[int], items: AsyncGenerator[int, None]) -> None:
    async with tx, aclosing(items):
        async for item in items:
            await tx.send(item)


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
            mark_held()
            nursery.cancel_scope.cancel()
        for rx in receivers:
            rx.close()
        return got

    return job


HAND_WRITTEN = "hand-written task + channel(0) each"

SCENARIO = MemoryScenario(
    name="memory per opening",
    description=(
        "N @stream openings held open at once, each advanced one item; traced memory held at"
        " 1,000 and 10,000 openings, per opening vs a task + channel(0) each"
        " (goal: <= 1.10x at 10,000)"
    ),
    sizes=(1_000, 10_000),
    smoke_sizes=(100, 1_000),
    contenders=(
        Contender(HAND_WRITTEN, load_hand_written, note="one shared nursery"),
        Contender("beluga @stream open() each", load_beluga),
    ),
    expected=expected,
    reference=HAND_WRITTEN,
    per_item_goal=1.10,
)
