"""``Stream.timeout(first, between, total)``: expiry raises `trio.TooSlowError` and stops the
producer at that moment; fast streams pass; other cancellations pass through untouched.

All on trio's virtual clock (``autojump_clock``): times are exact.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from _helpers import raised_by

import beluga_trio as bt
from beluga_trio.testing import no_leaks


@dataclass
class Timeline:
    """What a `paced` producer did, on the virtual clock."""

    started: list[float] = field(default_factory=list[float])  # an item's computation began
    yielded: list[float] = field(default_factory=list[float])
    closed_at: float | None = None  # the producer's finally ran
    cancelled: bool = False  # the producer was cancelled (rather than closed at a yield)


def paced(timeline: Timeline, gaps: Sequence[float]) -> bt.Stream[int]:
    """Yields ``0, 1, ...``: item i after sleeping ``gaps[i]`` seconds."""

    @bt.stream
    async def produce() -> AsyncIterator[int]:
        try:
            for i, gap in enumerate(gaps):
                timeline.started.append(trio.current_time())
                await trio.sleep(gap)
                timeline.yielded.append(trio.current_time())
                yield i
        except trio.Cancelled:
            timeline.cancelled = True
            raise
        finally:
            timeline.closed_at = trio.current_time()

    return produce()


async def drain(s: bt.Stream[int]) -> tuple[list[int], BaseException | None, float]:
    """The items received, the exception that ended the stream, and when it ended."""
    items, error = await s.collect_result()
    return items, error, trio.current_time()


# --------------------------------------------------------------------------------- expiry


async def test_first_expires_and_the_producer_stops_at_that_moment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    with no_leaks():
        items, error, ended = await drain(paced(timeline, [5, 1]).timeout(first=2))
    assert items == []
    assert isinstance(error, trio.TooSlowError)
    assert "first item" in str(error)
    assert "2.0 s" in str(error)
    assert ended == 2.0
    assert timeline.closed_at == 2.0  # cancelled at the deadline, not at the item's end (5)
    assert timeline.cancelled
    assert timeline.yielded == []


async def test_between_expires_after_the_last_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    s = paced(timeline, [0.5, 0.5, 0.5, 10, 0.5]).timeout(between=1)
    items, error, ended = await drain(s)
    assert items == [0, 1, 2]
    assert isinstance(error, trio.TooSlowError)
    assert "between items" in str(error)
    assert ended == pytest.approx(2.5)  # last item at 1.5, plus between=1
    assert timeline.closed_at == pytest.approx(2.5)
    assert timeline.cancelled
    assert len(timeline.started) == 4  # the 5th item was never started


async def test_total_expires_mid_stream(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    items, error = await paced(timeline, [1] * 10).timeout(total=3.5).collect_result()
    assert items == [0, 1, 2]
    assert isinstance(error, trio.TooSlowError)
    assert "total=3.5" in str(error)
    assert timeline.closed_at == 3.5
    assert trio.current_time() == 3.5


async def test_total_is_measured_from_the_opening(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    s = paced(timeline, [1, 1, 1]).timeout(total=2.5)
    await trio.sleep(100)  # building the stream starts no clock
    opened = trio.current_time()
    items, error, ended = await drain(s)
    assert items == [0, 1]
    assert isinstance(error, trio.TooSlowError)
    assert ended - opened == pytest.approx(2.5)


async def test_the_earliest_limit_wins(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    # between=3 would expire at 1 + 3 = 4, total=2.5 first.
    items, error, ended = await drain(paced(timeline, [1, 5]).timeout(between=3, total=2.5))
    assert items == [0]
    assert "total" in str(error)
    assert ended == 2.5


async def test_after_expiry_the_stream_is_finished(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    async with paced(timeline, [5]).timeout(first=1).open() as it:
        with pytest.raises(trio.TooSlowError):
            await anext(it)
        await trio.sleep(10)  # the consumer goes on inside the block...
        with pytest.raises(StopAsyncIteration):
            await anext(it)
    # ...but the producer was cancelled at the expiry, not when the block exits.
    assert timeline.closed_at == 1.0
    assert timeline.cancelled


async def test_the_producer_has_stopped_when_too_slow_error_is_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    async with paced(timeline, [5]).timeout(first=1).open() as it:
        with pytest.raises(trio.TooSlowError):
            await anext(it)
        # Caught inside the block: the producer's `finally` ran before the error was raised.
        assert timeline.closed_at == 1.0
        assert timeline.cancelled


async def test_expiry_stops_every_upstream_stage(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    mapped: list[int] = []

    async def slow_double(x: int) -> int:
        mapped.append(x)
        await trio.sleep(0.1)
        return 2 * x

    s = paced(timeline, [0.5, 0.5, 30]).map(slow_double).timeout(between=2)
    items, error, ended = await drain(s)
    assert items == [0, 2]
    assert isinstance(error, trio.TooSlowError)
    assert ended == pytest.approx(1.2 + 2)
    assert timeline.closed_at == ended
    assert mapped == [0, 1]


# ----------------------------------------------------------------------------- no expiry


async def test_no_expiry_when_fast_enough(autojump_clock: trio.testing.MockClock) -> None:
    timeline = Timeline()
    s = paced(timeline, [0.9, 0.9, 0.9, 0.9]).timeout(first=1, between=1, total=4)
    with no_leaks():
        assert await s.collect() == [0, 1, 2, 3]
    assert not timeline.cancelled


async def test_first_applies_to_the_first_item_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    assert await paced(timeline, [0.5, 5, 5]).timeout(first=1).collect() == [0, 1, 2]


async def test_between_does_not_apply_to_the_first_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    assert await paced(timeline, [5, 0.5, 0.5]).timeout(between=1).collect() == [0, 1, 2]


async def test_a_slow_consumer_does_not_count_against_the_producer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    received: list[int] = []
    async with paced(timeline, [0.5, 0.5, 0.5]).timeout(first=1, between=1).open() as it:
        async for x in it:
            received.append(x)
            await trio.sleep(60)  # limits are measured from each request
    assert received == [0, 1, 2]


async def test_timeout_over_a_sync_source(autojump_clock: trio.testing.MockClock) -> None:
    s = bt.from_iterable(range(1000)).map(lambda x: x + 1).timeout(first=1, between=1, total=5)
    assert await s.collect() == list(range(1, 1001))


def test_repr_names_the_limits() -> None:
    s = bt.from_iterable([1]).timeout(first=1, total=2.5)
    assert "timeout(first=1.0, total=2.5)" in repr(s)


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("name", ["first", "between", "total"])
@pytest.mark.parametrize("value", [0, -1, -0.5, math.inf, math.nan])
def test_limits_must_be_positive_finite_numbers(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        bt.from_iterable([1]).timeout(**{name: value})


@pytest.mark.parametrize("name", ["first", "between", "total"])
@pytest.mark.parametrize("value", ["1", True, [1], object()])
def test_limits_must_be_numbers(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=name):
        bt.from_iterable([1]).timeout(**{name: value})  # type: ignore[arg-type]


def test_validation_happens_when_the_stream_is_built() -> None:
    timeline = Timeline()
    with pytest.raises(ValueError, match="between"):
        paced(timeline, [1]).timeout(first=1, between=-2)
    assert timeline.started == []


# ------------------------------------------------------------------------ other cancellation


async def test_an_outer_cancellation_passes_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    reached_end = False
    with trio.move_on_after(1.5) as scope:
        with no_leaks():
            async with paced(timeline, [1, 1, 1]).timeout(first=10, between=10).open() as it:
                async for _ in it:
                    pass
                reached_end = True
    assert scope.cancelled_caught  # caught by the scope that was cancelled, not TooSlowError
    assert not reached_end
    assert timeline.closed_at == 1.5


async def test_an_outer_fail_after_is_not_confused_with_the_stream_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()

    async def run() -> None:
        with trio.fail_after(1):
            await paced(timeline, [5]).timeout(first=3).collect()

    error = await raised_by(run)
    assert isinstance(error, trio.TooSlowError)
    assert "first item" not in str(error)  # trio's own, from fail_after at t=1
    assert trio.current_time() == 1


async def test_a_cancelled_request_loses_nothing_and_does_not_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeline = Timeline()
    async with paced(timeline, [2, 2]).timeout(first=10, between=10).open() as it:
        with trio.move_on_after(1) as scope:
            await anext(it)
        assert scope.cancelled_caught
        assert await anext(it) == 0  # the item in flight was kept
        assert await anext(it) == 1
    assert timeline.closed_at is not None


async def test_a_cancelled_request_restarts_the_between_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each request gets the full limit, measured from that request.
    timeline = Timeline()
    async with paced(timeline, [0, 3]).timeout(between=2).open() as it:
        assert await anext(it) == 0
        with trio.move_on_after(1.5):
            await anext(it)
        assert await anext(it) == 1  # 1.5 s more were enough: the item came at 3
