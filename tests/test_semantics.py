"""Decisions the contract leaves open, pinned down (see docs/errors-and-cancellation.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import beluga_trio as bt


@bt.stream
async def numbers(fail_at: int, delay: float = 0.0) -> AsyncIterator[int]:
    for i in range(1000):
        if delay:
            await trio.sleep(delay)
        if i == fail_at:
            raise ValueError(f"failed at {i}")
        yield i


@pytest.mark.parametrize("capacity", [1, 8, 64, 256])
async def test_unread_error_beyond_take_is_dropped_however_far_a_buffer_read(
    capacity: int,
) -> None:
    # The source fails at item 50; a buffer may or may not have read that far when take(5)
    # has its items. The result must not depend on it.
    assert await numbers(50).buffer(capacity).take(5).collect() == [0, 1, 2, 3, 4]
    assert await bt.from_iterable(range(100)).map(lambda x: 1 // (50 - x)).buffer(capacity).take(
        5
    ).collect() == [0, 0, 0, 0, 0]


async def test_error_after_a_cancelled_request_goes_to_the_next_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with numbers(1, delay=1).open() as it:
        assert await anext(it) == 0
        with trio.move_on_after(0.5):
            await anext(it)  # the producer fails while no one waits
        await trio.sleep(5)
        with pytest.raises(ValueError, match="failed at 1"):
            await anext(it)


async def test_error_after_a_cancelled_request_is_dropped_if_never_asked_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with numbers(1, delay=1).open() as it:
        assert await anext(it) == 0
        with trio.move_on_after(0.5):
            await anext(it)
        await trio.sleep(5)  # the error is held; the consumer leaves without asking
    # reaching this line is the assertion: leaving raised nothing


async def test_cleanup_error_of_a_cancelled_busy_producer_is_raised_on_leaving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = RuntimeError("cleanup")

    @bt.stream
    async def produce() -> AsyncIterator[int]:
        try:
            yield 0
            await trio.sleep(10)
            yield 1
        finally:
            raise err

    with pytest.raises(RuntimeError) as info:  # noqa: PT012 - the block is the scenario
        async with produce().take(5).open() as it:
            assert await anext(it) == 0
            with trio.move_on_after(1):
                await anext(it)  # cancelled while the producer computes
    assert info.value is err


async def test_shielded_consumer_of_a_cancelled_producer_sees_no_clean_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(1) as outer:
        async with numbers(-1, delay=10).open() as it:
            with trio.CancelScope(shield=True), pytest.raises(trio.BrokenResourceError):
                await anext(it)  # the producer, not shielded, is cancelled at t=1
    assert outer.cancelled_caught


async def test_shielded_consumer_of_a_cancelled_buffer_sees_no_clean_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(1) as outer:
        async with numbers(-1, delay=10).buffer(4).open() as it:
            with trio.CancelScope(shield=True), pytest.raises(trio.BrokenResourceError):
                await anext(it)
    assert outer.cancelled_caught
