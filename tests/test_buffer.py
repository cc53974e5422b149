"""Tests of ``s.buffer(capacity, *, overflow)`` and ``bt.BufferedStream`` (docs/design.md, "The
guarantees"; issue 3): items and order, read-ahead bounds, overflow policies and statistics,
errors as themselves after the buffered items, leaving and cancellation, and the Go
``BufferedStream`` failure modes (docs/design.md, "Bugs of the prior art") shown not to happen.
"""

import itertools
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import Probe, drain_with_timeouts, raised_by, tasks_living
from _stage_helpers import ERRORS, ExitState, all_blocked, cancelled_while_consuming
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks

OVERFLOWS: list[bt.Overflow] = ["wait", "drop_oldest", "drop_newest"]

# --------------------------------------------------------------------------------------------
# Items and order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overflow", OVERFLOWS)
@pytest.mark.parametrize("capacity", [1, 2, 16, 1000])
async def test_a_buffer_that_keeps_up_delivers_every_item_in_order(
    capacity: int, overflow: bt.Overflow
) -> None:
    probe = ScriptedProducer.counting(50)
    with no_leaks():
        got = await probe.stream().buffer(capacity, overflow=overflow).collect()
    # A lock-step producer behind a consumer that reads at once never fills a buffer of 1+
    # when the policy is "wait"; with drop policies only what overflowed is lost.
    if overflow == "wait":
        assert got == list(range(50))
    else:
        assert got == sorted(set(got))
        assert set(got) <= set(range(50))
    assert probe.opened == probe.cleanups == 1


@pytest.mark.parametrize("capacity", [1, 3, 64])
async def test_buffer_wait_over_a_sync_source_is_the_identity(capacity: int) -> None:
    with no_leaks():
        assert await bt.from_iterable(range(5000)).buffer(capacity).collect() == list(range(5000))
        async with bt.from_iterable(range(700)).buffer(capacity).open() as it:
            assert [x async for x in it] == list(range(700))


async def test_buffered_stream_iterates_every_item_and_reports_len_and_capacity() -> None:
    probe = ScriptedProducer.counting(10)
    seen: list[tuple[int, int, int]] = []
    with no_leaks():
        async with bt.BufferedStream(probe.stream(), capacity=4) as buf:
            assert buf.capacity == 4
            await all_blocked()
            assert len(buf) == 4  # read ahead as soon as the block is entered
            async for x in buf:
                seen.append((x, len(buf), buf.capacity))
                assert 0 <= len(buf) <= buf.capacity
    assert [x for x, _, _ in seen] == list(range(10))
    assert seen[0][1] <= 4
    assert probe.cleanups == 1


async def test_a_buffered_stream_is_iterated_once() -> None:
    with no_leaks():
        async with bt.BufferedStream(bt.from_iterable(range(10)), capacity=3) as buf:
            async for x in buf:
                if x == 2:
                    break
            with pytest.raises(RuntimeError):
                async for _ in buf:
                    pass  # pragma: no cover


async def test_a_buffered_stream_cannot_be_iterated_by_two_loops_at_once() -> None:
    with no_leaks():
        async with bt.BufferedStream(bt.from_iterable(range(10)), capacity=3) as buf:
            first = aiter(buf)
            with pytest.raises(RuntimeError):
                aiter(buf)
            assert [x async for x in first] == list(range(10))


@settings(deadline=None, max_examples=40)
@given(
    xs=st.lists(st.integers(), max_size=60),
    capacity=st.integers(min_value=1, max_value=70),
    async_source=st.booleans(),
    patience=st.sampled_from([None, 0.0, 0.5]),
)
def test_buffer_wait_of_any_capacity_is_the_identity(
    xs: list[int], capacity: int, async_source: bool, patience: float | None
) -> None:
    async def main() -> None:
        probe = Probe()

        @bt.stream
        async def produce() -> AsyncGenerator[int, None]:
            probe.entered += 1
            try:
                for x in xs:
                    await trio.sleep(0.3)
                    yield x
            finally:
                probe.finalized += 1

        source = produce() if async_source else bt.from_iterable(xs)
        with no_leaks():
            if patience is None:
                got = await source.buffer(capacity).collect()
            else:
                async with source.buffer(capacity).open() as it:
                    got, _ = await drain_with_timeouts(it, patience)
        assert got == xs
        assert probe.finalized == probe.entered

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(min_value=0, max_value=80),
    capacity=st.integers(min_value=1, max_value=10),
    overflow=st.sampled_from(["drop_oldest", "drop_newest"]),
    reads_every=st.integers(min_value=1, max_value=5),
)
def test_drop_policies_deliver_an_ordered_subsequence_and_count_the_rest(
    n: int, capacity: int, overflow: bt.Overflow, reads_every: int
) -> None:
    """Whatever the consumer's pace: delivered + dropped == produced, in order, no duplicates."""

    async def main() -> None:
        probe = ScriptedProducer.counting(n)
        got: list[int] = []
        async with bt.BufferedStream(probe.stream(), capacity=capacity, overflow=overflow) as buf:
            i = 0
            async for x in buf:
                got.append(x)
                i += 1
                if i % reads_every == 0:
                    await all_blocked()  # let the producer run ahead
            stats = buf.statistics()
        assert got == sorted(set(got))
        assert set(got) <= set(range(n))
        assert len(got) + stats.dropped == n
        assert stats.peak <= capacity
        assert stats.buffered == 0

    trio.run(main)


# --------------------------------------------------------------------------------------------
# Read-ahead bounds, overflow policies, statistics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 2, 5, 64])
async def test_read_ahead_is_bounded_by_capacity_plus_one_in_hand(capacity: int) -> None:
    probe = ScriptedProducer.counting()
    with no_leaks():
        async with bt.BufferedStream(probe.stream(), capacity=capacity) as buf:
            await all_blocked()
            assert capacity <= probe.started <= capacity + 1
            assert len(buf) == capacity
            stats = buf.statistics()
            assert stats == bt.BufferStatistics(
                capacity=capacity, overflow="wait", buffered=capacity, peak=capacity, dropped=0
            )
            # Taking k items lets the producer run at most k further (lock-step upstream); it
            # is woken again once the buffer is down to half, so a full buffer costs a wake-up
            # per half buffer, not one per item.
            async for x in buf:
                if x == 2:
                    break
            await all_blocked()
            assert probe.started <= capacity + 1 + 3
            refilled = capacity if capacity - 3 <= capacity // 2 else capacity - 3
            assert len(buf) == refilled
    assert probe.cleanups == 1


@pytest.mark.parametrize("capacity", [1, 4, 32])
async def test_stream_buffer_reads_ahead_from_the_opening(capacity: int) -> None:
    probe = ScriptedProducer.counting()
    s = probe.stream().buffer(capacity)
    await all_blocked()
    assert probe.opened == 0  # cold until opened
    with no_leaks():
        async with s.open():
            await all_blocked()
            assert capacity <= probe.started <= capacity + 1
    assert probe.cleanups == 1


async def test_a_full_wait_buffer_pauses_the_producer_until_an_item_is_taken() -> None:
    probe = ScriptedProducer.counting()
    async with bt.BufferedStream(probe.stream(), capacity=3) as buf:
        it = aiter(buf)
        # Full: the producer waits for room holding no item. It is woken once the buffer is
        # down to half (1 of 3 here) and fills it again: a wake-up per half buffer, not per item.
        for taken, started in enumerate([3, 3, 5, 5, 7]):
            await all_blocked()
            assert probe.started == started
            assert await anext(it) == taken


async def test_drop_oldest_keeps_the_newest_items_and_counts_drops() -> None:
    probe = ScriptedProducer.counting(100)
    with no_leaks():
        async with bt.BufferedStream(probe.stream(), capacity=5, overflow="drop_oldest") as b:
            await all_blocked()
            # the producer never blocked: it ran to the end
            assert probe.started == 100
            assert probe.cleanups == 1
            assert len(b) == 5
            assert b.statistics() == bt.BufferStatistics(
                capacity=5, overflow="drop_oldest", buffered=5, peak=5, dropped=95
            )
            assert [x async for x in b] == [95, 96, 97, 98, 99]
            assert len(b) == 0
            assert b.statistics().buffered == 0


async def test_drop_newest_keeps_the_oldest_items_and_counts_drops() -> None:
    probe = ScriptedProducer.counting(100)
    with no_leaks():
        async with bt.BufferedStream(probe.stream(), capacity=5, overflow="drop_newest") as b:
            await all_blocked()
            assert probe.started == 100
            assert probe.cleanups == 1
            assert b.statistics() == bt.BufferStatistics(
                capacity=5, overflow="drop_newest", buffered=5, peak=5, dropped=95
            )
            assert [x async for x in b] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
async def test_drop_policies_never_block_an_endless_producer(
    overflow: bt.Overflow, autojump_clock: trio.testing.MockClock
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    with no_leaks():
        async with bt.BufferedStream(probe.stream(), capacity=3, overflow=overflow) as b:
            await trio.sleep(100.5)
            assert probe.started == 101  # one per second, never paused by the full buffer
            stats = b.statistics()
            assert stats.buffered == 3
            assert stats.dropped == 100 - 3
            it = aiter(b)
            if overflow == "drop_oldest":
                assert [await anext(it) for _ in range(3)] == [97, 98, 99]
            else:
                assert [await anext(it) for _ in range(3)] == [0, 1, 2]
            assert await anext(it) == 100  # the one that was in the producer's hand
    assert probe.cleanups == 1


async def test_statistics_track_peak_and_buffered() -> None:
    probe = ScriptedProducer.counting(10)
    async with bt.BufferedStream(probe.stream(), capacity=8) as buf:
        await all_blocked()
        it = aiter(buf)
        for _ in range(6):
            await anext(it)
        stats = buf.statistics()
        assert stats.peak == 8
        assert stats.capacity == 8
        assert stats.overflow == "wait"
        assert stats.dropped == 0
        assert stats.buffered == len(buf)
        assert 2 <= stats.buffered <= 4


@pytest.mark.parametrize("capacity", [0, -1])
async def test_capacity_must_be_at_least_one(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        await bt.from_iterable([1]).buffer(capacity).collect()
    with pytest.raises(ValueError, match="capacity"):
        async with bt.BufferedStream(bt.from_iterable([1]), capacity=capacity):
            pass  # pragma: no cover


@pytest.mark.parametrize("capacity", [1.0, "3", True, None])
async def test_capacity_must_be_an_int(capacity: Any) -> None:
    with pytest.raises(TypeError):
        await bt.from_iterable([1]).buffer(capacity).collect()
    with pytest.raises(TypeError):
        async with bt.BufferedStream(bt.from_iterable([1]), capacity=capacity):
            pass  # pragma: no cover


@pytest.mark.parametrize("overflow", ["drop_all", "block", None])
async def test_overflow_is_validated(overflow: Any) -> None:
    with pytest.raises(ValueError, match="overflow"):
        await bt.from_iterable([1]).buffer(3, overflow=overflow).collect()
    with pytest.raises(ValueError, match="overflow"):
        async with bt.BufferedStream(bt.from_iterable([1]), 3, overflow=overflow):
            pass  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_buffered_items_come_before_the_producers_error_which_arrives_as_itself(
    kind: str,
) -> None:
    err = ERRORS[kind]()
    probe = ScriptedProducer(range(5), raise_before=5, error=err, cleanup_checkpoints=0)
    got: list[int] = []

    async def consume() -> None:
        async with bt.BufferedStream(probe.stream(), capacity=10) as buf:
            await all_blocked()
            assert probe.cleanups == 1  # the producer has already raised
            assert len(buf) == 5
            async for x in buf:
                got.append(x)  # noqa: PERF401 - what arrived before the error

    with no_leaks():
        assert await raised_by(consume) is err
    # KeyboardInterrupt and SystemExit are interrupts, not stream content: like a child task's
    # in a trio nursery, one cancels the consumer's block at once instead of waiting in line.
    fatal = isinstance(err, KeyboardInterrupt | SystemExit)
    assert got == ([] if fatal else [0, 1, 2, 3, 4])


@pytest.mark.parametrize("overflow", OVERFLOWS)
@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_stream_buffer_raises_the_producers_error_as_itself(
    kind: str, overflow: bt.Overflow
) -> None:
    err = ERRORS[kind]()
    with no_leaks():
        exc = await raised_by(
            ScriptedProducer(range(3), raise_before=3, error=err, cleanup_checkpoints=0)
            .stream()
            .buffer(2, overflow=overflow)
            .collect
        )
    assert exc is err
    res = (
        await ScriptedProducer(
            range(3), raise_before=3, error=ValueError("x"), cleanup_checkpoints=0
        )
        .stream()
        .buffer(8, overflow=overflow)
        .collect_result()
    )
    assert res.items == [0, 1, 2]


async def test_an_error_from_a_sync_source_arrives_as_itself_after_its_items() -> None:
    err = ExceptionGroup("mine", [ValueError(1)])

    def gen() -> Iterator[int]:
        yield from range(3)
        raise err

    got: list[int] = []

    async def consume() -> None:
        async with bt.from_iterable(gen()).buffer(100).open() as it:
            async for x in it:
                got.append(x)  # noqa: PERF401 - keeps what arrived before the error

    with no_leaks():
        assert await raised_by(consume) is err
    assert got == [0, 1, 2]


async def test_an_error_in_the_consumers_body_arrives_as_itself() -> None:
    probe = ScriptedProducer.counting()
    for err in [ValueError("body"), ExceptionGroup("mine", [KeyError(1)]), KeyboardInterrupt()]:

        async def consume(err: BaseException = err) -> None:
            async with bt.BufferedStream(probe.stream(), capacity=4) as buf:
                async for x in buf:
                    if x == 1:
                        raise err

        before = probe.cleanups
        with no_leaks():
            assert await raised_by(consume) is err
        assert probe.cleanups == before + 1


# --------------------------------------------------------------------------------------------
# Leaving and cancellation (Go BufferedStream leaks its goroutine; cancellation looks like
# the end of the stream) -- docs/design.md, "Bugs of the prior art"
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 1.0])
@pytest.mark.parametrize("how", ["BufferedStream", "Stream.buffer"])
async def test_breaking_out_stops_the_producer_before_the_block_ends(
    autojump_clock: trio.testing.MockClock, how: str, delay: float
) -> None:
    """Go: a consumer that stops reading a BufferedStream leaves its goroutine blocked."""
    probe = ScriptedProducer.counting(delay=delay)
    state = ExitState()
    before = tasks_living()
    got: list[int] = []
    try:
        if how == "BufferedStream":
            async with bt.BufferedStream(probe.stream(), capacity=4) as buf:
                async for x in buf:
                    got.append(x)
                    if x == 2:
                        break
        else:
            async with probe.stream().buffer(4).open() as it:
                async for x in it:
                    got.append(x)
                    if x == 2:
                        break
    finally:
        state.record([probe])
    assert got == [0, 1, 2]
    assert state.finalized == [1], "the producer's finally had not run when the block ended"
    assert state.tasks == before, "a task outlived the block"


async def test_leaving_without_reading_stops_a_producer_blocked_on_a_full_buffer() -> None:
    probe = ScriptedProducer.counting()
    state = ExitState()
    before = tasks_living()
    try:
        async with bt.BufferedStream(probe.stream(), capacity=2):
            await all_blocked()
            assert probe.started == 2  # full: the producer waits for room, holding no item
    finally:
        state.record([probe])
    assert state.finalized == [1]
    assert state.tasks == before


@pytest.mark.parametrize("overflow", OVERFLOWS)
async def test_external_cancellation_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, overflow: bt.Overflow
) -> None:
    """Go: cancellation ends the stream as if it had finished."""
    probe = ScriptedProducer.counting(100, delay=1)
    with no_leaks():
        got, after_loop, caught = await cancelled_while_consuming(
            lambda: probe.stream().buffer(4, overflow=overflow), cancel_after=3
        )
    assert got == [0, 1, 2]
    assert not after_loop
    assert caught
    assert probe.cleanups == 1

    probe = ScriptedProducer.counting(100, delay=1)
    with no_leaks():
        got, after_loop, caught = await cancelled_while_consuming(
            lambda: probe.stream().buffer(4, overflow=overflow), deadline=5.5
        )
    assert got == [0, 1, 2, 3, 4]
    assert not after_loop
    assert caught
    assert probe.cleanups == 1


async def test_a_deadline_while_waiting_on_a_buffered_stream_is_not_a_clean_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    after_loop = False
    got: list[int] = []
    with no_leaks(), trio.move_on_after(3.5) as cs:
        async with bt.BufferedStream(probe.stream(), capacity=2) as buf:
            async for x in buf:
                got.append(x)  # noqa: PERF401 - keeps what arrived before the cancellation
            after_loop = True
    assert cs.cancelled_caught
    assert not after_loop
    assert got == [0, 1, 2]
    assert probe.cleanups == 1


@pytest.mark.parametrize("capacity", [1, 3])
async def test_a_timed_out_anext_loses_no_item(
    autojump_clock: trio.testing.MockClock, capacity: int
) -> None:
    delays = [0.5, 2, 0.1, 3, 0, 0, 1.5, 4, 0.2, 2]
    probe = ScriptedProducer(
        [str(i) for i in range(len(delays))], delay=delays, cleanup_checkpoints=0
    )
    with no_leaks():
        async with probe.stream().buffer(capacity).open() as it:
            got, cancelled = await drain_with_timeouts(it, 1.0)
    assert got == [str(i) for i in range(len(delays))]
    assert cancelled >= 3
    assert probe.cleanups == 1


async def test_a_timed_out_anext_on_a_buffered_stream_loses_no_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delays = [1.5, 0, 2.5, 0.2, 3, 0]
    async with bt.BufferedStream(
        ScriptedProducer(
            [str(i) for i in range(len(delays))], delay=delays, cleanup_checkpoints=0
        ).stream(),
        capacity=2,
    ) as buf:
        got, cancelled = await drain_with_timeouts(aiter(buf), 1.0)
    assert got == [str(i) for i in range(len(delays))]
    assert cancelled >= 3


async def test_a_cancelled_consumer_of_a_sync_source_is_cancelled_promptly() -> None:
    """An endless in-memory source behind a buffer can be cancelled by a (real) deadline."""
    seen = 0
    after = False
    with no_leaks(), trio.move_on_after(0.2) as cs:
        async with bt.from_iterable(itertools.count()).buffer(64).open() as it:
            async for _ in it:
                seen += 1
            after = True
    assert cs.cancelled_caught
    assert not after
    assert seen > 0


@pytest.mark.parametrize("overflow", OVERFLOWS)
async def test_a_shielded_consumer_does_not_see_a_clean_end_when_the_producer_is_cancelled(
    autojump_clock: trio.testing.MockClock, overflow: bt.Overflow
) -> None:
    """The producer task is cancelled by a scope the consumer is shielded from: the consumer
    must get an error, not an end of stream that looks like the producer finished."""
    probe = ScriptedProducer.counting(10, delay=1)
    got: list[int] = []
    after_loop = False
    with trio.CancelScope() as outer:
        async with probe.stream().buffer(3, overflow=overflow).open() as it:
            with trio.CancelScope(shield=True):
                try:
                    async for x in it:
                        got.append(x)
                        if x == 2:
                            outer.cancel()
                    after_loop = True
                except trio.BrokenResourceError:
                    pass  # an error that says the stream cannot go on: fine
    assert not after_loop, f"looked like a clean end after {got}"
    assert probe.cleanups == 1
