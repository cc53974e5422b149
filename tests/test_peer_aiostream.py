"""aiostream's tests of map (task_limit, ordered), merge, chunks and timeout, re-expressed
against beluga_trio's ``map(concurrency=, ordered=)``, ``merge``, ``batch`` and ``timeout``.

Source of the scenarios: vxgmichel/aiostream, ``tests/test_combine.py`` (``test_map``,
``test_merge``), ``tests/test_transform.py`` (``test_chunks``) and ``tests/test_time.py``
(``test_timeout``). aiostream is GPL-3.0: only the scenarios were taken, in our own words;
no code. aiostream checks its timing with a loop that records each jump of its clock; here
``autojump_clock`` and the time each item arrives play that part. aiostream's
``add_resource`` (a source whose cleanup takes a second) becomes a producer whose
``finally`` awaits.

Pinned differences (``docs/peers.md``): ``map`` without ``concurrency`` calls one item at a
time (aiostream runs every call at once unless ``task_limit`` is given); a sync function is
accepted with ``concurrency=``; a sync function that returns an awaitable is a `TypeError`
(see ``test_peer_asyncstdlib.py``); a ``merge`` error is raised at its position, after the
items that arrived before it, never dropped because a later stage read ahead.
"""

# ruff: noqa: RUF100, RUF102
# flake8-async cannot know that a @bt.stream body runs in its own task:
# noqa: ASYNC119

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TypeVar

import pytest
import trio
import trio.testing
from _peers import RaiseTogether, assert_interrupt_comes_first

import beluga_trio as bt
from beluga_trio.testing import no_leaks

T = TypeVar("T")


async def arrivals(s: bt.Stream[T]) -> list[tuple[T, float]]:
    """Every item of ``s`` with the time (from the opening) at which it arrived."""
    start = trio.current_time()
    got: list[tuple[T, float]] = []
    async with s.open() as items:
        async for item in items:
            got.append((item, trio.current_time() - start))  # noqa: PERF401 - the loop is the scenario
    return got


class Cleanup:
    """Records of a timed producer: when its cleanup began and ended."""

    def __init__(self) -> None:
        self.began: list[float] = []
        self.ended: list[float] = []


class Forever:
    """The schedule ``(i, i)`` for i = 0, 1, 2, ... (aiostream's ``count(interval=1)``)."""

    def __iter__(self) -> Iterator[tuple[float, int]]:
        return ((i, i) for i in itertools.count())


def timed(
    schedule: Iterable[tuple[float, T]], cleanup: Cleanup | None = None, cleanup_time: float = 1
) -> bt.Stream[T]:
    """A producer that yields each ``(at, item)`` of ``schedule`` (re-iterable: each opening
    reads it afresh) at time ``at`` after its start (aiostream's ``range(..., interval=)``
    and ``delay``); with ``cleanup``, its ``finally`` awaits ``cleanup_time`` seconds
    (aiostream's ``add_resource``)."""

    @bt.stream
    async def produce() -> AsyncIterator[T]:
        start = trio.current_time()
        try:
            for at, item in schedule:
                await trio.sleep_until(start + at)
                yield item
        finally:
            if cleanup is not None:
                cleanup.began.append(trio.current_time() - start)
                await trio.sleep(cleanup_time)  # noqa: ASYNC102 - the scenario's cleanup awaits
                cleanup.ended.append(trio.current_time() - start)

    return produce()


def counting_from(first: int) -> bt.Stream[int]:
    """An endless stream ``first, first + 1, ...`` (aiostream's ``count``)."""
    return bt.from_iterable(itertools.count(first))


async def sleep_only(x: int) -> None:
    await trio.sleep(x)


async def sleep_and_result(x: int) -> int:
    await trio.sleep(x)
    return x


# -------------------------------------------------------------------------------------- map


async def test_map_sync_function() -> None:
    """test_map, "Synchronous/simple": a sync function over a range."""
    with no_leaks():
        assert await bt.from_iterable(range(5)).map(lambda x: x**2).collect() == [
            x**2 for x in range(5)
        ]


async def test_map_concurrent_calls_overlap(autojump_clock: trio.testing.MockClock) -> None:
    """test_map, "Asynchronous/simple/concurrent" and "multiple/concurrent": calls sleeping
    1, 2 and 3 s with room for all three overlap: they arrive at 1, 2 and 3 s."""
    with no_leaks():
        got = await arrivals(bt.from_iterable([1, 2, 3]).map(sleep_and_result, concurrency=3))
    assert got == [(1, 1), (2, 2), (3, 3)]
    with no_leaks():
        nones = await arrivals(bt.from_iterable([1, 2, 3]).map(sleep_only, concurrency=3))
    assert nones == [(None, 1), (None, 2), (None, 3)]


@pytest.mark.parametrize("concurrency", [None, 1], ids=["default", "concurrency=1"])
async def test_map_one_call_at_a_time(
    autojump_clock: trio.testing.MockClock, concurrency: int | None
) -> None:
    """test_map, "Asynchronous/simple/sequential" and "multiple/sequential" (``task_limit=1``):
    the calls run one after another and arrive at 1, 3 and 6 s. Pinned difference: this is
    also what ``map`` does without ``concurrency`` (aiostream's default is no limit)."""
    with no_leaks():
        got = await arrivals(
            bt.from_iterable([1, 2, 3]).map(sleep_and_result, concurrency=concurrency)
        )
    assert got == [(1, 1), (2, 3), (3, 6)]


async def test_map_unordered_delivers_in_completion_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_map, "As completed" (``ordered=False``): each result arrives as soon as its call
    ends, so items sleeping 2, 4, 1, 3, 5 s arrive sorted, one a second."""
    with no_leaks():
        got = await arrivals(
            bt.from_iterable([2, 4, 1, 3, 5]).map(sleep_and_result, concurrency=5, ordered=False)
        )
    assert got == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]


async def test_map_ordered_waits_for_earlier_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_map, "As completed", with ``ordered=True``: the results keep the input order; a
    result that finished early waits for the earlier ones, and nothing waits longer."""
    with no_leaks():
        got = await arrivals(
            bt.from_iterable([2, 4, 1, 3, 5]).map(sleep_and_result, concurrency=5, ordered=True)
        )
    assert got == [(2, 2), (4, 4), (1, 4), (3, 4), (5, 5)]


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_error_is_a_position(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    """test_map, "As completed", with the call that finishes first (item 1, at 1 s) failing
    (issue 10, case 7; guarantee 8). In input order the error's position is after 2 and 4,
    which are still in flight when it happens: they are delivered first (at 2 and 4 s), then
    the error, as itself. In completion order it is the first thing that completes: it
    comes at once, before any item."""
    error = ValueError("item 1 failed")

    async def call(x: int) -> int:
        await trio.sleep(x)
        if x == 1:
            raise error
        return x

    got: list[tuple[int, float]] = []
    start = trio.current_time()
    with no_leaks(), pytest.raises(ValueError, match="item 1 failed") as caught:  # noqa: PT012
        async with (
            bt.from_iterable([2, 4, 1, 3, 5]).map(call, concurrency=5, ordered=ordered).open()
        ) as items:
            async for item in items:
                got.append((item, trio.current_time() - start))  # noqa: PERF401
    assert caught.value is error
    if ordered:
        assert got == [(2, 2), (4, 4)]
        assert trio.current_time() - start == 4
    else:
        assert got == []
        assert trio.current_time() - start == 1


@pytest.mark.parametrize("concurrency", [0, -1])
def test_map_concurrency_below_one_is_refused(concurrency: int) -> None:
    """test_map, "Invalid arguments" (``task_limit=0``): a `ValueError` naming the value, at
    call time."""
    with pytest.raises(ValueError, match=str(concurrency)):
        bt.from_iterable(range(1, 4)).map(sleep_only, concurrency=concurrency)


@pytest.mark.parametrize("ordered", [True, False])
async def test_map_sync_function_with_concurrency_is_accepted(ordered: bool) -> None:
    """test_map, "Invalid arguments" (a sync function with ``task_limit`` or
    ``ordered=False``), pinned difference: aiostream refuses them; beluga_trio accepts a
    sync function with ``concurrency=`` (it cannot overlap with anything, so it is called
    one item at a time) and the results are those of the plain ``map``."""
    with no_leaks():
        got = await (
            bt.from_iterable(range(1, 4)).map(lambda x: x**2, concurrency=3, ordered=ordered)
        ).collect()
    assert sorted(got) == [1, 4, 9]
    if ordered:
        assert got == [1, 4, 9]


async def test_map_concurrent_stops_when_the_consumer_has_enough(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_map, "Break": over an endless source with ten calls in flight, the consumer takes
    three results at 1, 2, 3 s; the calls still in flight are cancelled and nothing is left
    running."""
    with no_leaks():
        got = await arrivals(counting_from(1).map(sleep_and_result, concurrency=10).take(3))
    assert got == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize("concurrency", [None, 1], ids=["default", "concurrency=1"])
async def test_map_stuck_behind_a_timeout(
    autojump_clock: trio.testing.MockClock, concurrency: int | None
) -> None:
    """test_map, "Stuck": one call at a time over an endless source, calls taking 1, 2, 3...
    seconds, under a 4.5 s limit between items: four items, then `trio.TooSlowError`, as
    itself, when the fifth call has run 4.5 s."""
    start = trio.current_time()
    with no_leaks():
        items, error = await (
            counting_from(1)
            .map(sleep_and_result, concurrency=concurrency)
            .timeout(between=4.5)
            .collect_result()
        )
    assert items == [1, 2, 3, 4]
    assert type(error) is trio.TooSlowError
    assert trio.current_time() - start == 1 + 2 + 3 + 4 + 4.5


# ------------------------------------------------------------------------------------ merge


async def test_merge_interleaves_by_arrival(autojump_clock: trio.testing.MockClock) -> None:
    """test_merge, first case: one source yields 0, 2, 4 at 0, 2, 4 s, the other 1, 3 at
    1, 3 s; the merge delivers each as it arrives."""
    evens = timed([(0, 0), (2, 2), (4, 4)])
    odds = timed([(1, 1), (3, 3)])
    with no_leaks():
        got = await arrivals(bt.merge(evens, odds))
    assert got == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]


async def test_merge_then_take_stops_both_sources(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, second case (``[:3]``), with aiostream's slow-cleanup sources: the
    consumer takes three items; at 2 s both sources are stopped, and ``take`` delivers its
    last item once they have (it stops its upstream before it delivers).

    The source with an item due at 3 s is stopped in the middle of it (its sleep) and is
    cancelled. Pinned difference: under trio a cancellation stays on (level-triggered), so
    its cleanup's await is cancelled too, where asyncio's one-shot cancellation lets
    aiostream's cleanup await its second; a cleanup that must await shields itself. The
    source that just yielded 2 is stopped either parked at ``yield`` (if merge's task had
    not yet asked it for more: closed without being cancelled, its cleanup awaits its full
    second) or in the middle of its next item (cancelled, like the other): which one is
    the scheduler's choice."""
    evens_cleanup, odds_cleanup = Cleanup(), Cleanup()
    evens = timed([(0, 0), (2, 2), (4, 4)], evens_cleanup)
    odds = timed([(1, 1), (3, 3)], odds_cleanup)
    start = trio.current_time()
    with no_leaks():
        got = await arrivals(bt.merge(evens, odds).take(3))
    assert evens_cleanup.began == odds_cleanup.began == [2]
    assert odds_cleanup.ended == []
    assert evens_cleanup.ended in ([], [3])
    stopped_at = 3 if evens_cleanup.ended else 2
    assert got == [(0, 0), (1, 1), (2, stopped_at)]
    assert trio.current_time() - start == stopped_at


async def test_merge_of_a_stream_with_itself_then_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, third case: a source that yields 1 and then never ends, merged with
    itself (two independent openings of one cold stream), under a 1 s limit between items:
    1 twice, then `trio.TooSlowError` as itself."""

    @bt.stream
    async def one_then_never() -> AsyncIterator[int]:
        yield 1
        await trio.sleep_forever()

    s = one_then_never()
    start = trio.current_time()
    with no_leaks():
        items, error = await bt.merge(s, s).timeout(between=1).collect_result()
    assert items == [1, 1]
    assert type(error) is trio.TooSlowError
    assert trio.current_time() - start == 1


async def test_merge_of_two_lists_then_take() -> None:
    """test_merge, aiostream issue #65: two in-memory sources merged, three items taken.
    Which source comes first is the scheduler's choice; each source's items keep their
    order, and nothing is left running."""
    with no_leaks():
        got = await bt.merge(bt.from_iterable([1, 2]), bt.from_iterable([3, 4])).take(3).collect()
    assert len(got) == 3
    assert [x for x in got if x in (1, 2)] == [1, 2][: len([x for x in got if x in (1, 2)])]
    assert [x for x in got if x in (3, 4)] == [3, 4][: len([x for x in got if x in (3, 4)])]


async def test_merge_error_after_the_taken_items_is_never_seen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, fifth case: one source has 1, 2, 3 at once, the other fails a second
    later; the consumer takes three items before the error's position, so it never sees
    the error, and the failing source is stopped."""

    @bt.stream
    async def fails_later() -> AsyncIterator[int]:
        await trio.sleep(1)
        raise ZeroDivisionError
        yield 0  # pragma: no cover - makes this an async generator

    with no_leaks():
        got = await bt.merge(bt.from_iterable([1, 2, 3]), fails_later()).take(3).collect()
    assert got == [1, 2, 3]


async def test_merge_error_before_the_items_is_raised_at_its_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, fifth case, reversed timing, pinned difference: the failing source fails
    at once while the other's items come at 1, 2, 3 s. The error is a position in the merged
    stream: it is raised, as itself, after the items that arrived before it (none here), and
    stops the other source; ``take(3)`` does not make it disappear."""
    error = ZeroDivisionError()

    @bt.stream
    async def fails_at_once() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        raise error
        yield 0  # pragma: no cover - makes this an async generator

    slow = timed([(1, 1), (2, 2), (3, 3)])
    with no_leaks():
        items, raised = await bt.merge(slow, fails_at_once()).take(3).collect_result()
    assert items == []
    assert raised is error


async def test_merge_source_own_timeout_is_its_error_not_an_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, fifth case, with the failing source's error being its own
    ``trio.fail_after`` (issue 10, case 1): the loop over the merge does not end as if the
    stream were finished; `trio.TooSlowError` comes out of it, as itself, after the items
    that arrived before it."""

    @bt.stream
    async def stalls() -> AsyncIterator[int]:
        yield 10
        with trio.fail_after(0.5):
            await trio.sleep(1)
        yield 11  # pragma: no cover

    got: list[int] = []
    after_loop: list[str] = []
    with no_leaks(), pytest.raises(trio.TooSlowError) as caught:  # noqa: PT012
        async with bt.merge(stalls(), timed([(5, 0)])).open() as items:
            async for x in items:
                got.append(x)  # noqa: PERF401 - the loop is the scenario
            after_loop.append("reached")  # pragma: no cover
    assert type(caught.value) is trio.TooSlowError
    assert got == [10]
    assert after_loop == []


@pytest.mark.parametrize("error_first", [True, False], ids=["error first", "interrupt first"])
async def test_merge_keyboard_interrupt_with_a_concurrent_error_is_not_grouped(
    error_first: bool,
) -> None:
    """test_merge, fifth case, with two sources failing at the same moment, one with
    ``KeyboardInterrupt`` (issue 10, case 4): it arrives as itself, never in a group, never
    dropped, and the other error is not lost: it hangs off it."""

    async def scenario(
        together: RaiseTogether, error: BaseException, interrupt: BaseException
    ) -> None:
        @bt.stream
        async def fails(exc: BaseException) -> AsyncIterator[int]:
            yield 0
            await together.raise_(exc)
            yield 1  # pragma: no cover

        await bt.merge(fails(error), fails(interrupt)).collect()

    await assert_interrupt_comes_first(scenario, error_first=error_first)


@pytest.mark.parametrize("error_first", [True, False], ids=["error first", "interrupt first"])
async def test_map_concurrent_keyboard_interrupt_with_a_concurrent_error_is_not_grouped(
    error_first: bool,
) -> None:
    """test_map, "Asynchronous/simple/concurrent", with two calls failing at the same moment,
    one with ``KeyboardInterrupt`` (issue 10, case 4): it arrives as itself, never grouped,
    never dropped, and the other error hangs off it."""

    async def scenario(
        together: RaiseTogether, error: BaseException, interrupt: BaseException
    ) -> None:
        failures = [error, interrupt]

        async def call(i: int) -> int:
            await together.raise_(failures[i])
            return i  # pragma: no cover

        await bt.from_iterable([0, 1]).map(call, concurrency=2).collect()

    await assert_interrupt_comes_first(scenario, error_first=error_first)


async def test_merge_source_that_swallows_its_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_merge, "Silencing of a CancelledError": one source swallows the cancellation that
    stops it and returns; the other yields 1. Taking one item gives [1], and leaving neither
    hangs nor raises."""
    swallowed: list[str] = []

    @bt.stream
    async def swallows() -> AsyncIterator[int]:
        try:
            await trio.sleep(2)
        except trio.Cancelled:  # noqa: ASYNC103 - swallowed on purpose
            swallowed.append("cancelled")
            return  # noqa: ASYNC104 - the peer's scenario swallows it on purpose
        yield 0  # pragma: no cover

    @bt.stream
    async def one() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        yield 1

    with no_leaks():
        got = await bt.merge(swallows(), one()).take(1).collect()
    assert got == [1]
    assert swallowed == ["cancelled"]


async def test_merge_of_nothing_is_empty() -> None:
    """test_merge, "Empty merge" (aiostream issue #95): no sources, no items."""
    empty: list[bt.Stream[int]] = []
    with no_leaks():
        assert await bt.merge(*empty).collect() == []


# --------------------------------------------------------------------------- chunks: batch


@pytest.mark.parametrize(
    ("n", "expected"),
    [(3, [[0, 1, 2]]), (4, [[0, 1, 2], [3]]), (5, [[0, 1, 2], [3, 4]])],
)
async def test_batch_of_a_timed_source(
    autojump_clock: trio.testing.MockClock, n: int, expected: list[list[int]]
) -> None:
    """test_chunks, first three cases: items one a second, in batches of three; the last
    batch holds the rest."""
    with no_leaks():
        got = await timed([(i, i) for i in range(n)]).batch(3).collect()
    assert got == expected


async def test_batch_then_take_of_an_endless_source_with_slow_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """test_chunks, last case: an endless source, one item a second, whose cleanup takes
    a second; the first batch of three is taken, the source is stopped, and its cleanup
    has run to the end before the block exits."""
    cleanup = Cleanup()
    with no_leaks():
        got = await timed(Forever(), cleanup).batch(3).take(1).collect()
    assert got == [[0, 1, 2]]
    assert len(cleanup.ended) == 1
    assert cleanup.ended[0] - cleanup.began[0] == 1


# ---------------------------------------------------------------------------------- timeout


@pytest.mark.parametrize("limit", ["between", "total", "first"])
async def test_timeout_not_reached(autojump_clock: trio.testing.MockClock, limit: str) -> None:
    """test_timeout, first case: a source that ends at once, under a 5 s limit: every item,
    no time spent."""
    limits: dict[str, float] = {limit: 5}
    start = trio.current_time()
    with no_leaks():
        got = await bt.from_iterable(range(3)).timeout(**limits).collect()
    assert got == [0, 1, 2]
    assert trio.current_time() == start


@pytest.mark.parametrize("limit", ["between", "total"])
async def test_timeout_of_a_source_that_never_ends(
    autojump_clock: trio.testing.MockClock, limit: str
) -> None:
    """test_timeout, second case: three items at once, then nothing, under a 1 s limit:
    the three items, then `trio.TooSlowError` as itself after 1 s, and the source is
    stopped."""
    stopped: list[str] = []

    @bt.stream
    async def then_never() -> AsyncIterator[int]:
        try:
            for i in range(3):
                yield i
            await trio.sleep_forever()
        finally:
            stopped.append("finally")

    limits: dict[str, float] = {limit: 1}
    start = trio.current_time()
    with no_leaks():
        items, error = await then_never().timeout(**limits).collect_result()
    assert items == [0, 1, 2]
    assert type(error) is trio.TooSlowError
    assert trio.current_time() - start == 1
    assert stopped == ["finally"]
