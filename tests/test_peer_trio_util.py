"""trio-util's tests of ``trio_async_generator``, re-expressed against ``@bt.stream``.

Source of the scenarios: groove-x/trio-util, ``tests/test_trio_async_generator.py`` (read
there, rewritten here in our own words). Both run the generator body in a task of its own so
that it may hold a cancel scope across ``yield``. Their shared producer yields the squares of
a range, each ``yield`` inside the body's own ``move_on_after``; a timeout that fires counts,
and after a given number of them the producer stops.

One pinned difference: trio-util's generator runs ahead and sends the next item into a
channel, so a timeout that fires during that send loses the item; a ``@bt.stream`` body is
lock-step, the item it parks with has already been handed over, and its own timeout never
loses an item (``docs/peers.md``).
"""

# ruff: noqa: RUF100, RUF102
# flake8-async cannot know that a @bt.stream body runs in its own task:
# noqa: ASYNC119

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.testing import no_leaks


class Squares:
    """The peers' producer, with a record of what its body saw."""

    def __init__(self) -> None:
        self.timeouts_caught: list[tuple[int, float]] = []  # (i, when)
        self.finished = False

    def stream(
        self, start: int, stop: int, *, timeout: float = math.inf, max_timeouts: int = 1
    ) -> bt.Stream[int]:
        @bt.stream
        async def squares() -> AsyncIterator[int]:
            try:
                for i in range(start, stop):
                    with trio.move_on_after(timeout) as cs:
                        yield i**2
                        await trio.lowlevel.checkpoint()
                    if cs.cancelled_caught:
                        self.timeouts_caught.append((i, trio.current_time()))
                        if len(self.timeouts_caught) == max_timeouts:
                            break
            finally:
                self.finished = True

        return squares()


async def test_full_iteration() -> None:
    """trio_agen_full_iteration: every square arrives, in order."""
    peer = Squares()
    got: list[int] = []
    with no_leaks():
        async with peer.stream(0, 50).open() as squares:
            async for square in squares:
                got.append(square)  # noqa: PERF401 - the loop is the scenario
    assert got == [i**2 for i in range(50)]
    assert got[-1] == 49**2
    assert peer.finished


async def test_consumer_returns_from_inside_the_loop() -> None:
    """trio_agen_caller_exits: the consumer ``return``s from its loop; the producer has
    stopped and cleaned up before the block's ``async with`` finishes."""
    peer = Squares()

    async def first_at_least(bound: int) -> int:
        async with peer.stream(0, 50).open() as squares:
            async for square in squares:
                if square >= bound:
                    return square
        raise AssertionError("not reached")  # pragma: no cover

    with no_leaks():
        assert await first_at_least(400) == 400
    assert peer.finished
    assert peer.timeouts_caught == []


async def test_consumer_cancelled_while_busy(autojump_clock: trio.testing.MockClock) -> None:
    """trio_agen_caller_cancelled: the consumer's own deadline fires while it sleeps on the
    first item; its scope catches the cancellation, the code after the loop does not run and
    the producer is stopped. The producer's own (infinite) timeout never counts it."""
    peer = Squares()
    after_loop: list[str] = []
    with no_leaks(), trio.move_on_after(1) as cs:
        async with peer.stream(0, 50).open() as squares:
            async for square in squares:
                assert square == 0
                await trio.sleep(10)  # cancelled by the move_on_after above
            after_loop.append("reached")  # pragma: no cover
    assert cs.cancelled_caught
    assert after_loop == []
    assert peer.finished
    assert peer.timeouts_caught == []


async def test_producer_own_timeout_while_parked_ends_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """trio_agen_aborts_yield (issue 10, case 2; guarantee 9): the producer's own 0.5 s
    timeout fires while it is parked at ``yield`` and the consumer sleeps 1 s on the item.
    The body's scope catches its own cancellation, counts it, and (one timeout allowed) the
    stream ends cleanly after the one item: never a broken stream. As documented, the body
    sees the cancellation at its ``yield`` when the next item is requested (at 1 s), not at
    once (at 0.5 s), so that it computes nothing no one asked for."""
    peer = Squares()
    got: list[int] = []
    start = trio.current_time()
    with no_leaks():
        async with peer.stream(0, 50, timeout=0.5, max_timeouts=1).open() as squares:
            async for square in squares:
                got.append(square)
                await trio.sleep(1)
    assert got == [0]
    assert peer.timeouts_caught == [(0, start + 1)]
    assert peer.finished


async def test_producer_own_timeout_while_parked_goes_on_without_losing_an_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """trio_agen_aborts_yield_and_continues, pinned difference: the consumer dawdles 0.6 s on
    25, past the producer's 0.5 s timeout for that item. The body's scope catches it and the
    stream goes on (guarantee 9). trio-util loses 36, the item its generator was already
    sending when its timeout fired; a lock-step producer parks with an item already handed
    over, so nothing is lost: the sum is the full sum, and the one timeout belongs to 25."""
    peer = Squares()
    total = 0
    dawdled_until: list[float] = []
    with no_leaks():
        async with peer.stream(0, 50, timeout=0.5, max_timeouts=99).open() as squares:
            async for square in squares:
                total += square
                if square == 5**2:
                    await trio.sleep(0.6)
                    dawdled_until.append(trio.current_time())
    assert total == sum(i**2 for i in range(50))
    assert peer.timeouts_caught == [(5, dawdled_until[0])]
    assert peer.finished


async def test_nursery_child_failing_while_parked_is_the_streams_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """trio_async_generator's reason to exist (a nursery held across ``yield``), with a
    child that fails while the producer is parked and the consumer is busy (issue 10,
    case 2): the child's error is the body's own error, and arrives as the body's error
    would (in the body's nursery's group), not as a broken stream; items already delivered
    stay delivered."""
    failure = RuntimeError("child failed")

    async def child() -> None:
        await trio.sleep(0.5)
        raise failure

    @bt.stream
    async def producer() -> AsyncIterator[int]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            for i in range(10):
                yield i
                await trio.sleep_forever()  # pragma: no cover - the child fails first

    got: list[int] = []
    # The body's own nursery's group, holding the child's error and nothing else.
    body_error = pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, check=lambda e: e is failure))
    with no_leaks(), body_error:  # noqa: PT012 - the block is the scenario
        async with producer().open() as items:
            async for x in items:
                got.append(x)
                await trio.sleep(1)  # busy while the child fails
    assert got == [0]
