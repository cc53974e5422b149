"""Bugs the cancellation sweep found (tests/test_sweep_stages.py), pinned by minimal tests.

Both come from one heuristic: an exception that surfaces in a task while that task is being
cancelled is taken for a *cleanup* error (a ``finally`` that replaced the cancellation), and
cleanup errors are always raised when the opening closes. But an error can surface in a
cancelled task without any cleanup being involved:

1. ``Tasks._run`` (``_channel.py``): a buffer, merge or concurrent-map task whose upstream
   pull had already *returned* the stream's error (it was computed before the stop) resumes
   after the stage was stopped (``take`` got its items, the consumer broke out) or cancelled.
   The stream's error, which the consumer never reached and which the docs say is dropped
   with the unread items, is raised from the block: ``fails().buffer(4).take(1).collect()``
   raises the producer's error about every other time instead of returning ``[0]``.
2. ``Producer._serve`` (``_producer.py``): a ``@stream`` body that raises its own error
   right after the consumer's scope was cancelled, before any checkpoint delivered the
   cancellation, gets the same treatment: the cancelled block raises
   ``BaseExceptionGroup([Cancelled, error])``, so the cancel scope that was cancelled lets an
   ``ExceptionGroup([error])`` escape instead of catching the cancellation.

A likely fix for both: count an exception as a cleanup error only when a `trio.Cancelled` is
in its ``__context__`` chain (a ``finally`` that replaced the cancellation), not merely because
the task was cancelled when it surfaced.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import pytest
import trio

import beluga_trio as bt


@bt.stream
async def fails_after_one() -> AsyncGenerator[int, None]:
    await trio.lowlevel.checkpoint()
    yield 0
    raise ValueError("boom")


async def take_one_of_buffer() -> list[int]:
    return await fails_after_one().buffer(4).take(1).collect()


async def take_one_of_merge() -> list[int]:
    return await bt.merge(fails_after_one()).take(1).collect()


async def break_out_of_buffer() -> list[int]:
    got: list[int] = []
    async with fails_after_one().buffer(4).open() as items:
        async for x in items:
            got.append(x)
            break
    return got


@pytest.mark.xfail(
    strict=True,
    reason="bug: a stage task that already holds the stream's error when it is stopped "
    "reports that unread error as a cleanup error (Tasks._run)",
)
@pytest.mark.parametrize(
    "consume",
    [take_one_of_buffer, take_one_of_merge, break_out_of_buffer],
    ids=["take-of-buffer", "take-of-merge", "break-out-of-buffer"],
)
async def test_an_unread_error_in_flight_is_dropped_when_the_consumer_leaves(
    consume: Callable[[], Awaitable[list[int]]],
) -> None:
    # The race is lost about every other time (trio randomises the order of tasks that become
    # runnable together); a hundred tries make the failure certain.
    for _ in range(100):
        assert await consume() == [0]


@pytest.mark.xfail(
    strict=True,
    reason="bug: a producer error raised right after the consumer was cancelled is taken for "
    "a cleanup error, so the cancelled block raises a group (Producer._serve)",
)
async def test_a_cancelled_block_raises_its_cancellation_not_the_unread_error() -> None:
    with trio.CancelScope() as scope:

        @bt.stream
        async def cancel_then_fail() -> AsyncGenerator[int, None]:
            await trio.lowlevel.checkpoint()
            yield 0
            scope.cancel()  # the consumer's scope is cancelled (as a deadline would)...
            raise ValueError("boom")  # ...and, before any checkpoint, the stream fails

        async with cancel_then_fail().open() as items:
            async for _ in items:
                pass
    assert scope.cancelled_caught
