"""Memory per opening (issue 18): a server holds one opening per client, so what an open
``@stream`` opening holds is kept small. Held open and advanced one item, an opening costs no
more memory (tracemalloc, what is held while all are open) than the leanest hand-written
equivalent: a task running the same generator and sending over ``trio.open_memory_channel(0)``
in one nursery shared by all (no nursery of its own, which an opening has). The benchmark
``memory per opening`` measures the same at 10,000 openings (``make bench``).
"""

import gc
import tracemalloc
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing

import trio

import beluga_trio as bt

N = 300


async def _count() -> AsyncGenerator[int, None]:
    for i in range(2):
        yield i
        await trio.lowlevel.checkpoint()


async def _beluga(n: int, held: Callable[[], None]) -> None:
    s = bt.stream(_count)()
    async with AsyncExitStack() as stack:
        for _ in range(n):
            it = await stack.enter_async_context(s.open())
            assert await anext(it) == 0
        held()


async def _send_all(tx: trio.MemorySendChannel[int]) -> None:
    async with tx, aclosing(_count()) as items:
        try:
            async for item in items:
                await tx.send(item)
        except trio.BrokenResourceError:
            pass


async def _hand_written(n: int, held: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:
        receivers: list[trio.MemoryReceiveChannel[int]] = []
        for _ in range(n):
            tx, rx = trio.open_memory_channel[int](0)
            nursery.start_soon(_send_all, tx)
            receivers.append(rx)
        for rx in receivers:
            assert await rx.receive() == 0
        held()
        for rx in receivers:
            rx.close()


async def _held_per_opening(job: Callable[[int, Callable[[], None]], Awaitable[None]]) -> float:
    held: list[int] = []
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        await job(N, lambda: held.append(tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    assert len(held) == 1
    return (held[0] - base) / N


async def test_an_open_opening_holds_no_more_than_a_hand_written_task_and_channel() -> None:
    await _held_per_opening(_beluga)  # warm-up: caches, interned names
    await _held_per_opening(_hand_written)
    ours = await _held_per_opening(_beluga)
    reference = await _held_per_opening(_hand_written)
    print(f"per opening: beluga {ours:,.0f} B, hand-written {reference:,.0f} B")
    assert ours <= reference, f"{ours:,.0f} B per opening > {reference:,.0f} B hand-written"
