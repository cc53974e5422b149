"""Bugs the cancellation sweep found (tests/test_sweep_stages.py), now fixed, pinned here.

Both came from one heuristic: an exception that surfaced in a task while that task was being
cancelled was taken for a *cleanup* error (a ``finally`` that replaced the cancellation), and
cleanup errors are always raised when the opening closes. But an error can surface in a
cancelled task without any cleanup being involved:

1. ``Tasks._run`` (``_channel.py``): a buffer, merge or concurrent-map task whose upstream pull
   had already *returned* the stream's error resumed after the stage was stopped (``take`` got
   its items, the consumer broke out) or cancelled, and the unread error was raised from the
   block: ``fails().buffer(4).take(1).collect()`` raised about every other time.
2. ``Producer._serve`` (``_producer.py``): a ``@stream`` body raising its own error right after
   the consumer's scope was cancelled, before any checkpoint, made the cancelled block raise
   ``BaseExceptionGroup([Cancelled, error])``.

The first fix walked the exception's ``__context__`` for a `trio.Cancelled`, which took a
producer's own timeout (``trio.TooSlowError``) for a cleanup error. Outcomes are now decided
from state (``beluga_trio/_outcome.py``): a stage task's error is always the stream's content
(its upstream already classified it), and a producer's error is a cleanup error exactly when
this opening asked it to stop or a scope around it (the consumer's) is cancelled. So case 2 is
now reported rather than dropped: the consumer's scope was cancelled when the body raised, and
an error raised while the consumer is being cancelled replaces the cancellation, as an error
raised in a ``finally`` would; it is never silently lost.
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


@pytest.mark.parametrize(
    "consume",
    [take_one_of_buffer, take_one_of_merge, break_out_of_buffer],
    ids=["take-of-buffer", "take-of-merge", "break-out-of-buffer"],
)
async def test_an_unread_error_in_flight_is_dropped_when_the_consumer_leaves(
    consume: Callable[[], Awaitable[list[int]]],
) -> None:
    # Before the fix the race was lost about every other time (trio randomises the order of
    # tasks that become runnable together); a hundred tries make a regression certain to show.
    for _ in range(100):
        assert await consume() == [0]


async def test_an_error_raised_while_the_consumer_is_cancelled_replaces_the_cancellation() -> None:
    scope = trio.CancelScope()

    @bt.stream
    async def cancel_then_fail() -> AsyncGenerator[int, None]:
        await trio.lowlevel.checkpoint()
        yield 0
        scope.cancel()  # the consumer's scope is cancelled (as a deadline would)...
        raise ValueError("boom")  # ...and, before any checkpoint, the stream fails

    async def consume() -> None:
        with scope:
            async with cancel_then_fail().open() as items:
                async for _ in items:
                    pass

    with pytest.raises(ValueError, match="boom"):
        await consume()
    assert not scope.cancelled_caught
