"""trio's own tests of ``trio.as_safe_channel``, re-expressed against ``@bt.stream``.

Source of the scenarios: python-trio/trio, ``src/trio/_tests/test_channel.py``, every
``test_as_safe_channel_*`` test (read there, rewritten here in our own words). An
``as_safe_channel`` generator runs in its own task and feeds the consumer through a channel;
a ``@bt.stream`` body runs in its own task too, so the same scenarios apply. Where
beluga_trio deliberately differs (lock-step hand-over, one reader per iterator, ``async with``
on a cold stream), the test pins our behaviour and ``docs/peers.md`` says why.

The producers below hold cancel scopes and nurseries across ``yield`` and await in
``finally`` on purpose: the contract allows it in a ``@bt.stream`` body.
"""

# ruff: noqa: RUF100, RUF102
# flake8-async cannot know that a @bt.stream body runs in its own task:
# noqa: ASYNC119

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from _peers import chained, holds, leaves

import beluga_trio as bt
from beluga_trio.testing import no_leaks


async def test_one_item_drained() -> None:
    """as_safe_channel_exhaust: a one-item producer, drained by ``async for``."""
    finished: list[str] = []

    @bt.stream
    async def one() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        try:
            yield 1
        finally:
            finished.append("finally")

    got: list[int] = []
    with no_leaks():
        async with one().open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
    assert got == [1]
    assert finished == ["finally"]


async def test_break_after_one_item_stops_the_producer() -> None:
    """as_safe_channel_broken_resource, through ``break``: the consumer leaves after one
    item; the second is never computed and leaving raises nothing."""
    started: list[int] = []

    @bt.stream
    async def two() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        started.append(1)
        yield 1
        started.append(2)  # pragma: no cover - lock-step: no one asks for it
        yield 2  # pragma: no cover

    with no_leaks():
        async with two().open() as items:
            async for x in items:
                assert x == 1
                break
    assert started == [1]


async def test_aclose_after_one_item() -> None:
    """as_safe_channel_broken_resource, through ``aclose()``: closing the iterator stops the
    producer at once (its ``finally`` has run when ``aclose`` returns), the next ``anext``
    ends the iteration (`StopAsyncIteration`, where trio's channel raises
    `trio.ClosedResourceError`), the second item is never computed, and leaving the block
    raises nothing."""
    started: list[int] = []
    finished: list[str] = []

    @bt.stream
    async def two() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        try:
            started.append(1)
            yield 1
            started.append(2)  # pragma: no cover - closed before it is asked for
            yield 2  # pragma: no cover
        finally:
            finished.append("finally")

    with no_leaks():
        async with two().open() as items:
            assert await anext(items) == 1
            await items.aclose()
            assert finished == ["finally"]  # aclose() waits until the producer has stopped
            with pytest.raises(StopAsyncIteration):
                await anext(items)
    assert started == [1]
    assert finished == ["finally"]


async def test_aclose_before_any_item() -> None:
    """as_safe_channel_close_before_iteration: closed before the first ``anext``, the body
    never runs, and the next ``anext`` ends the iteration (`StopAsyncIteration`)."""
    entered: list[str] = []

    @bt.stream
    async def never() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        entered.append("body")  # pragma: no cover - no one ever asks
        yield 1  # pragma: no cover

    with no_leaks():
        async with never().open() as items:
            await items.aclose()
            with pytest.raises(StopAsyncIteration):
                await anext(items)
    assert entered == []


async def test_cancelled_before_any_request_never_runs_the_body() -> None:
    """as_safe_channel_cancelled: the consumer's scope is cancelled before it asks for
    anything; the body never runs and nothing escapes the cancelled scope."""
    entered: list[str] = []

    @bt.stream
    async def never() -> AsyncIterator[None]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        entered.append("body")  # pragma: no cover - no one ever asks
        yield  # pragma: no cover

    with no_leaks(), trio.CancelScope() as cs:
        async with never().open():
            cs.cancel()
    assert entered == []


async def test_error_after_an_item_arrives_as_itself() -> None:
    """as_safe_channel_no_race: the producer yields one item then raises; the consumer gets
    the item, then that very error, not wrapped in a group."""
    error = ValueError("oae")

    @bt.stream
    async def failing() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield 1
        raise error

    got: list[int] = []
    with no_leaks(), pytest.raises(ValueError, match="oae") as caught:  # noqa: PT012
        async with failing().open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
    assert caught.value is error
    assert got == [1]


async def test_producer_own_timeout_arrives_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """as_safe_channel_no_race, with the error being the producer's own ``fail_after``
    expiring (issue 10, case 1): ``trio.TooSlowError`` as itself, from ``collect()``."""

    @bt.stream
    async def reads() -> AsyncIterator[int]:
        yield 1
        with trio.fail_after(0.05):
            await trio.sleep(1)
        yield 2  # pragma: no cover - the timeout fires first

    with no_leaks(), pytest.raises(trio.TooSlowError) as caught:
        await reads().collect()
    assert type(caught.value) is trio.TooSlowError


async def test_error_raised_while_handling_own_timeout_arrives_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """as_safe_channel_no_race, with ``raise X from e`` inside the producer's own
    ``except trio.TooSlowError`` (issue 10, case 1; contract guarantee 9)."""

    class StalledError(Exception):
        pass

    raised: list[StalledError] = []

    @bt.stream
    async def reads() -> AsyncIterator[int]:
        yield 1
        try:
            with trio.fail_after(0.05):
                await trio.sleep(1)
        except trio.TooSlowError as e:
            error = StalledError("the server stalled")
            raised.append(error)
            raise error from e
        yield 2  # pragma: no cover

    got: list[int] = []
    with no_leaks(), pytest.raises(StalledError) as caught:  # noqa: PT012
        async with reads().open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
    assert caught.value is raised[0]
    assert got == [1]


async def test_keyboard_interrupt_from_the_producer_arrives_as_itself() -> None:
    """as_safe_channel_no_race, with ``KeyboardInterrupt`` in place of the error: it arrives
    as itself, never grouped (contract guarantees 1 and 10)."""
    interrupt = KeyboardInterrupt()

    @bt.stream
    async def interrupted() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield 1
        raise interrupt

    got: list[int] = []
    with no_leaks(), pytest.raises(KeyboardInterrupt) as caught:  # noqa: PT012
        async with interrupted().open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
    assert caught.value is interrupt
    assert got == [1]


async def test_busy_consumer_never_makes_the_producer_run_ahead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """as_safe_channel_buffer_size_too_small: the consumer sleeps on its first item until
    its deadline; the producer is never asked for a second one, and the cancelled loop is not
    a clean end."""
    started: list[int] = []
    after_loop: list[str] = []

    @bt.stream
    async def two() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        started.append(1)
        yield 1
        started.append(2)  # pragma: no cover - lock-step: no one asks for it
        raise AssertionError("asked for a second item")  # pragma: no cover

    with no_leaks(), trio.move_on_after(5) as cs:
        async with two().open() as items:
            async for x in items:
                assert x == 1
                await trio.sleep_forever()
            after_loop.append("reached")  # pragma: no cover
    assert cs.cancelled_caught
    assert started == [1]
    assert after_loop == []


async def test_no_work_between_requests() -> None:
    """as_safe_channel_no_interleave: after one item and a moment of scheduling, the
    producer has not gone on to the next item."""
    started: list[int] = []

    @bt.stream
    async def two() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        started.append(1)
        yield 1
        started.append(2)  # pragma: no cover - lock-step: no one asks for it
        raise AssertionError("ran between requests")  # pragma: no cover

    with no_leaks():
        async with two().open() as items:
            assert await anext(items) == 1
            await trio.testing.wait_all_tasks_blocked()
            assert started == [1]


async def test_consumer_error_and_cleanup_error_both_arrive() -> None:
    """as_safe_channel_genexit_finally: the consumer raises in its loop while the producer's
    ``finally`` raises too. The producer is closed at its ``yield`` (it sees
    ``GeneratorExit``), then both errors arrive, together, in one group (guarantee 1)."""
    events: list[str] = []
    cleanup_error = ValueError("agen")
    body_error = TypeError("iterator")

    @bt.stream
    async def producer() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        try:
            yield 1
        except BaseException as e:
            events.append(type(e).__name__)
            raise
        finally:
            events.append("finally")
            raise cleanup_error  # noqa: B012 - the cleanup error is the scenario

    both = pytest.RaisesGroup(
        pytest.RaisesExc(ValueError, check=lambda e: e is cleanup_error),
        pytest.RaisesExc(TypeError, check=lambda e: e is body_error),
        flatten_subgroups=True,
    )
    with no_leaks(), both:  # noqa: PT012 - the block is the scenario
        async with producer().open() as items:
            async for x in items:
                assert x == 1
                raise body_error
    assert events == ["GeneratorExit", "finally"]


async def test_keyboard_interrupt_in_cleanup_with_a_consumer_error_is_not_grouped() -> None:
    """as_safe_channel_genexit_finally, with ``KeyboardInterrupt`` from the producer's
    ``finally``. Pinned difference: ``as_safe_channel`` groups it with the consumer's error;
    beluga_trio raises it as itself, never grouped (guarantee 10), and the consumer's error
    is not lost: it is its ``__cause__``."""
    interrupt = KeyboardInterrupt()
    body_error = TypeError("iterator")

    @bt.stream
    async def producer() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        try:
            yield 1
        finally:
            raise interrupt  # noqa: B012 - the interrupt is the scenario

    with no_leaks(), pytest.raises(KeyboardInterrupt) as caught:  # noqa: PT012
        async with producer().open() as items:
            async for _ in items:
                raise body_error
    assert caught.value is interrupt
    assert any(e is body_error for e in chained(caught.value)), "the consumer's error was lost"
    assert caught.value.__cause__ is body_error


async def test_cleanup_that_awaits_runs_to_the_end_before_the_block_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """as_safe_channel_genexit_finally, with a ``finally`` that awaits instead of raising:
    a producer parked at ``yield`` is closed without being cancelled, so its cleanup can
    still await, and it has finished when the consumer's block exits."""
    cleaned: list[float] = []

    @bt.stream
    async def graceful() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2  # pragma: no cover
        finally:
            # a graceful close of a connection, say
            await trio.sleep(1)  # noqa: ASYNC102 - the scenario's cleanup awaits
            cleaned.append(trio.current_time())

    start = trio.current_time()
    with no_leaks():
        async with graceful().open() as items:
            async for _ in items:
                break
        assert cleaned == [start + 1]


async def test_nested_openings_of_one_stream_are_independent() -> None:
    """as_safe_channel_nested_loop: one stream opened again inside the loop over another
    opening of it; each opening runs the producer from the start."""

    @bt.stream
    async def two() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        for i in range(2):
            yield i

    s = two()
    pairs: list[tuple[int, int]] = []
    with no_leaks():
        async with s.open() as outer:
            async for i in outer:
                async with s.open() as inner:
                    async for j in inner:
                        pairs.append((i, j))  # noqa: PERF401 - the loop is the scenario
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1)]


async def test_producer_own_cancelled_scope_does_not_leak_to_the_consumer() -> None:
    """as_safe_channel_doesnt_leak_cancellation: the producer yields inside a cancel scope it
    cancelled itself. Its own scope catches its own cancellation (guarantee 9): the stream
    goes on, the consumer's loop ends normally and the code after it runs. As documented, the
    cancellation reaches the body at that ``yield`` when the next item is requested, so "b"
    has been handed over (``as_safe_channel`` cancels the send, and "b" is lost)."""

    @bt.stream
    async def producer() -> AsyncIterator[str]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield "a"
        with trio.CancelScope() as cs:
            cs.cancel()
            yield "b"
        yield "c"

    got: list[str] = []
    after_loop: list[str] = []
    with no_leaks():
        async with producer().open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
            after_loop.append("reached")
    assert got == ["a", "b", "c"]
    assert after_loop == ["reached"]


async def test_consumer_exception_group_is_not_unwrapped() -> None:
    """as_safe_channel_dont_unwrap_user_exceptiongroup: a group the consumer raises inside
    the block arrives as that very group."""

    @bt.stream
    async def unused() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield 1  # pragma: no cover - never asked

    group = ExceptionGroup("foo", [ValueError("bar")])
    with no_leaks(), pytest.RaisesGroup(ValueError, check=lambda eg: eg is group):
        async with unused().open():
            raise group


async def test_producer_exception_group_is_not_unwrapped() -> None:
    """as_safe_channel_dont_unwrap_user_exceptiongroup, from the producer's side: a group
    the producer raises arrives as that very group (guarantee 1)."""
    group = ExceptionGroup("foo", [ValueError("bar")])

    @bt.stream
    async def producer() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield 1
        raise group

    with no_leaks(), pytest.RaisesGroup(ValueError, check=lambda eg: eg is group):
        await producer().collect()


async def test_two_tasks_receiving_from_one_iterator_is_refused() -> None:
    """as_safe_channel_multiple_receiver, pinned difference: trio lets two tasks receive
    from one channel; a `StreamIterator` has one reader at a time, and a second task waiting
    in ``anext`` at once gets `trio.BusyResourceError`. (Share a stream with ``fan_out`` or
    open it once per reader.)"""
    release = trio.Event()

    @bt.stream
    async def gated() -> AsyncIterator[int]:
        await release.wait()
        yield 0
        yield 1  # pragma: no cover

    got: list[int] = []

    async def first_reader(items: AsyncIterator[int]) -> None:
        got.append(await anext(items))

    with no_leaks():
        async with gated().open() as items, trio.open_nursery() as nursery:
            nursery.start_soon(first_reader, items)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await anext(items)
            release.set()
    assert got == [0]


async def test_consumer_cancelled_then_producer_cleanup_is_cancelled_too() -> None:
    """as_safe_channel_multi_cancel: the consumer's scope is cancelled while it handles an
    item; the consumer sees the cancellation first, then the producer's cleanup, which runs
    inside that scope, sees it at its checkpoint; the scope catches it."""
    events: list[str] = []

    @bt.stream
    async def producer() -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await trio.lowlevel.checkpoint()  # noqa: ASYNC102 - the scenario's cleanup awaits
            except trio.Cancelled:
                events.append("producer cancel")
                raise

    with no_leaks(), trio.CancelScope() as cs:
        async with producer().open() as items:
            async for _ in items:
                cs.cancel()
                try:
                    await trio.lowlevel.checkpoint()
                except trio.Cancelled:
                    events.append("consumer cancel")
                    raise
    assert cs.cancelled_caught
    assert events == ["consumer cancel", "producer cancel"]


async def test_nursery_held_across_yield_closes_cleanly_on_break() -> None:
    """as_safe_channel_genexit_exception_group: the producer holds a nursery across
    ``yield``; the consumer breaks. However the close reaches the body through its nursery,
    leaving raises nothing and the body's cleanup has run."""
    seen: list[str] = []

    @bt.stream
    async def producer() -> AsyncIterator[None]:
        try:
            async with trio.open_nursery():
                yield
        finally:
            seen.append("finally")

    with no_leaks():
        async with producer().open() as items:
            async for _ in items:
                break
    assert seen == ["finally"]


async def test_consumer_generator_exit_is_not_suppressed() -> None:
    """as_safe_channel_does_not_suppress_nested_genexit: a ``GeneratorExit`` the consumer
    raises inside the block is the consumer's own error, not the producer's close; it
    arrives as itself."""

    @bt.stream
    async def producer() -> AsyncIterator[None]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield
        yield  # pragma: no cover

    stray = GeneratorExit()
    with no_leaks(), pytest.raises(GeneratorExit) as caught:  # noqa: PT012
        async with producer().open() as items:
            await anext(items)
            raise stray
    assert caught.value is stray


async def _raise_when_cancelled(make: type[BaseException], raised: list[BaseException]) -> None:
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        error = make()
        raised.append(error)
        raise error from None  # noqa: ASYNC104 - the child's error is the scenario


async def test_nursery_child_error_during_close_is_raised() -> None:
    """as_safe_channel_genexit_filter: a child of the producer's nursery raises when the
    close cancels it; that error comes out of the block (guarantee 2), and the close itself
    (the ``GeneratorExit`` the producer was closed with) does not."""
    raised: list[BaseException] = []

    @bt.stream
    async def producer() -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise_when_cancelled, ValueError, raised)
            yield

    with no_leaks(), pytest.raises(BaseException) as caught:  # noqa: PT011, PT012
        async with producer().open() as items:
            async for _ in items:
                break
    assert len(raised) == 1
    assert [type(e) for e in leaves(caught.value)] == [ValueError]
    assert holds(caught.value, raised[0])


@pytest.mark.parametrize("other", [ValueError, None])
async def test_stray_generator_exit_from_a_nursery_child_is_not_swallowed(
    other: type[Exception] | None,
) -> None:
    """as_safe_channel_swallowing_extra_exceptions (issue 10, case 11): children of the
    producer's nursery raise ``GeneratorExit`` (and another error) when the close cancels
    them. Those are the children's own errors, not the close: none is swallowed."""
    raised: list[BaseException] = []

    @bt.stream
    async def producer() -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            if other is not None:
                nursery.start_soon(_raise_when_cancelled, other, raised)
            nursery.start_soon(_raise_when_cancelled, GeneratorExit, raised)
            yield

    with no_leaks(), pytest.raises(BaseException) as caught:  # noqa: PT011, PT012
        async with producer().open() as items:
            async for _ in items:
                break
    assert len(raised) == (1 if other is None else 2)
    for error in raised:
        assert holds(caught.value, error), f"{error!r} was swallowed"


async def test_another_task_stops_an_endless_loop_by_cancelling_it() -> None:
    """as_safe_channel_close_between_iteration: another task stops a consumer that loops over
    an endless producer with no checkpoint of its own. Here another task stops it by
    cancelling its scope: the loop is never starved of that (guarantee 5) and never ends
    as if the stream were finished (guarantee 3)."""

    @bt.stream
    async def endless() -> AsyncIterator[None]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        while True:
            yield

    after_loop: list[str] = []
    with no_leaks(), trio.CancelScope() as cs:
        async with endless().open() as items, trio.open_nursery() as nursery:

            async def stop_it() -> None:
                await trio.lowlevel.checkpoint()
                cs.cancel()

            nursery.start_soon(stop_it)
            async for _ in items:
                pass
            after_loop.append("reached")  # pragma: no cover
    assert cs.cancelled_caught
    assert after_loop == []


async def test_receive_timeout_loses_nothing_and_leaves_no_credit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """as_safe_channel's buffer_size_too_small and no_interleave, with a timeout on the
    receive. Pinned difference: a request cancelled by a timeout keeps the item in flight for
    the next request and starts nothing further (``as_safe_channel`` leaves a semaphore
    credit behind, so its generator computes an item no one asked for)."""
    started: list[int] = []

    @bt.stream
    async def slow() -> AsyncIterator[int]:
        for i in range(5):
            started.append(i)
            await trio.sleep(1)
            yield i

    with no_leaks():
        async with slow().open() as items:
            with trio.move_on_after(0.5) as cs:
                await anext(items)
            assert cs.cancelled_caught
            await trio.sleep(10)
            assert started == [0]
            assert await anext(items) == 0
            await trio.sleep(10)
            assert started == [0]
            assert await anext(items) == 1
            assert started == [0, 1]


@pytest.mark.parametrize("hold_nursery", [False, True])
async def test_cleanup_error_of_a_producer_cancelled_mid_item_arrives_as_itself(
    autojump_clock: trio.testing.MockClock, hold_nursery: bool
) -> None:
    """as_safe_channel_genexit_filter, with the consumer cancelled by its own deadline while
    the producer is in the middle of an item (issue 10, cases 3 and 8): the producer's
    ``finally`` raises, and that one error comes out of the block as itself, never swallowed
    and never in a one-element group."""
    cleanup_error = ValueError("cleanup failed")

    @bt.stream
    async def producer() -> AsyncIterator[int]:
        try:
            if hold_nursery:
                async with trio.open_nursery():
                    await trio.sleep(10)
                    yield 1  # pragma: no cover
            else:
                await trio.sleep(10)
                yield 1  # pragma: no cover
        finally:
            raise cleanup_error  # noqa: B012 - the cleanup error is the scenario

    with no_leaks(), pytest.raises(ValueError, match="cleanup failed") as caught:  # noqa: PT012
        with trio.move_on_after(1):
            async with producer().open() as items:
                await anext(items)
    assert caught.value is cleanup_error
