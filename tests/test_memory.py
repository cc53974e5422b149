"""Bounded memory (docs/design.md, guarantee 6): ``fan_out`` with one lagging consumer over a
stream and over one ten times as long. The peak of traced memory (tracemalloc) does not grow
with the length of the stream, and the items taken from the source but not yet seen by the
slowest consumer stay within its buffer (asyncstdlib ``tee`` holds 999,001 items and 153 MB
in the same job at 1,000,000 items: docs/design.md, "What things cost").

The default run compares 10,000 with 100,000 items (a few seconds): an unbounded buffer would
hold the whole stream, ten times more at the larger size, which the ratio check sees. The
full proof, 100,000 against 1,000,000 items (about a minute under tracemalloc), is behind the
``soak`` marker: ``make soak`` and ``.ci/run`` run it. Run with ``-s`` to see the peaks.
"""

import gc
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trio

import beluga_trio as bt
from beluga_trio.testing import no_leaks

BUFFER = 1024  # fan_out's default
SLOW_EVERY = 16  # the slow consumer passes a full schedule point every 16 items


@dataclass
class Run:
    n: int
    peak: int  # bytes above what was traced when the run began
    worst_lag: int  # most items read from the source and not yet seen by the slow consumer
    results: list[int]


async def _fan_out_with_a_lagging_consumer(n: int) -> Run:
    read = 0

    def source() -> Iterator[int]:
        nonlocal read
        for i in range(n):  # distinct int objects (28 bytes each) beyond 256
            read += 1
            yield i

    async def fast(view: bt.Stream[int]) -> int:
        count = 0

        def inc(_: int) -> None:
            nonlocal count
            count += 1

        await view.for_each(inc)  # drains whatever is ready at once
        return count

    worst_lag = 0

    async def slow(view: bt.Stream[int]) -> int:
        nonlocal worst_lag
        seen = 0
        async with view.open() as it:
            async for _ in it:  # one item at a time ...
                seen += 1
                if seen % SLOW_EVERY == 0:
                    worst_lag = max(worst_lag, read - seen)
                    await trio.lowlevel.checkpoint()  # ... and lets the others run often
        return seen

    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    results = await bt.fan_out(bt.from_iterable(source()), fast, slow)
    peak = tracemalloc.get_traced_memory()[1] - base
    return Run(n=n, peak=peak, worst_lag=worst_lag, results=results)


@pytest.mark.parametrize(
    ("small_n", "large_n"),
    [
        pytest.param(10_000, 100_000, id="100k"),
        pytest.param(100_000, 1_000_000, id="1M", marks=pytest.mark.soak),
    ],
)
async def test_fan_out_memory_does_not_grow_with_the_stream(small_n: int, large_n: int) -> None:
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        with no_leaks():
            await _fan_out_with_a_lagging_consumer(small_n // 10)  # warm-up: one-time allocations
            small = await _fan_out_with_a_lagging_consumer(small_n)
            large = await _fan_out_with_a_lagging_consumer(large_n)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    for run in (small, large):
        print(
            f"\nfan_out, 2 consumers, one lagging, {run.n:>9,} items: "
            f"peak traced memory {run.peak / 1024:,.1f} KiB, "
            f"most items held for the slow consumer {run.worst_lag}"
        )
    assert small.results == [small_n, small_n]
    assert large.results == [large_n, large_n]
    # The slow consumer really lagged a full buffer behind, and never more than that (plus the
    # item in the distributor's hand).
    for run in (small, large):
        assert BUFFER // 2 <= run.worst_lag <= BUFFER + 2
    # Memory: small, and the same for ten times the items. An unbounded buffer would hold the
    # whole larger stream here: some 3.5 MB of ints at 100,000 items, more than 30 MB at 1M.
    assert small.peak < 1 * 2**20
    assert large.peak < 1 * 2**20
    assert large.peak <= 1.5 * small.peak, f"{large.peak} vs {small.peak}: memory grew"
