"""asyncstdlib's tests of map, filter, islice, reduce, batched and tee, re-expressed against
beluga_trio's ``map``/``filter``/``take``/``skip``/``reduce``/``batch``/``fan_out``.

Source of the scenarios: maxfischer2781/asyncstdlib, ``unittests/test_builtins.py``
(``test_map_*``, ``test_filter_*``), ``unittests/test_itertools.py`` (``test_islice*``,
``test_batched*``, ``test_tee*``) and ``unittests/test_functools.py`` (``test_reduce*``),
read there and rewritten here in our own words. asyncstdlib's "sync and async" matrix (a sync
or async function over a sync or async iterable) is kept as parameters.

Pinned differences (``docs/peers.md``): a sync function that returns a coroutine is a
`TypeError`, not awaited; ``reduce`` always takes an initial value; a stream over a one-shot
iterator is opened once, so consecutive slices come from one opening; ``fan_out`` reads the
source in one task at the slowest consumer's pace, with a bounded buffer per consumer.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, cast

import pytest
import trio
import trio.testing
from _peers import RaiseTogether, assert_interrupt_comes_first, async_stream

import beluga_trio as bt
from beluga_trio.testing import no_leaks

# One source factory per side of asyncstdlib's matrix: a re-iterable sync source, and a
# one-shot async generator.
SOURCES: dict[str, Callable[[Sequence[int]], bt.Stream[int]]] = {
    "sync source": lambda xs: bt.from_iterable(list(xs)),
    "async source": async_stream,
}


def double(x: int) -> int:
    return x * 2


async def async_double(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x * 2


def even(x: int) -> bool:
    return x % 2 == 0


async def async_even(x: int) -> bool:
    await trio.lowlevel.checkpoint()
    return x % 2 == 0


# ------------------------------------------------------------------------------------- map


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("fn", [double, async_double], ids=["sync fn", "async fn"])
@pytest.mark.parametrize("xs", [range(5), range(5, 10, 2), range(0)], ids=str)
async def test_map(
    source: Callable[[Sequence[int]], bt.Stream[int]],
    fn: Callable[[int], Any],
    xs: range,
) -> None:
    """test_map_as, test_map_sa, test_map_aa: a sync or async function over a sync or async
    source gives the builtin ``map``'s items."""
    with no_leaks():
        assert await source(xs).map(fn).collect() == [x * 2 for x in xs]


@pytest.mark.parametrize("concurrency", [None, 2], ids=["sequential", "concurrency=2"])
async def test_map_polled_with_short_timeouts_calls_each_item_once(
    autojump_clock: trio.testing.MockClock, concurrency: int | None
) -> None:
    """test_map_as, consumed by a consumer that polls with timeouts shorter than a call
    (issue 10, case 6; guarantee 7): every call is made exactly once per item, a timed-out
    request leaves the call running for the next one, and every result arrives in order."""
    calls: list[int] = []

    async def slow_double(x: int) -> int:
        calls.append(x)
        await trio.sleep(1)
        return x * 2

    got: list[int] = []
    polls = 0
    with no_leaks():
        async with (
            bt.from_iterable(range(5)).map(slow_double, concurrency=concurrency).open()
        ) as items:
            # Four 0.3 s polls cover a 1 s call: 5 items need about 20; a map that restarts
            # a cancelled call never delivers one (livelock), so give up well before.
            while polls < 100:
                polls += 1
                with trio.move_on_after(0.3):
                    try:
                        got.append(await anext(items))
                    except StopAsyncIteration:
                        break
    assert polls < 100, f"no progress: {got!r} after {polls} polls, calls {calls!r}"
    assert got == [0, 2, 4, 6, 8]
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert polls > len(got) + 1  # some polls did time out


def _hide_coroutine(
    fn: Callable[[int], Coroutine[Any, Any, int]],
) -> Callable[[int], Awaitable[int]]:
    """A plain function returning ``fn``'s coroutine (asyncstdlib's ``hide_coroutine``)."""

    def plain(x: int) -> Awaitable[int]:
        return fn(x)

    return plain


def _late_coroutine(x: int) -> Any:
    """A plain function that returns a plain value for 0 and a coroutine from 1 on."""
    return x * 2 if x == 0 else async_double(x)


@pytest.mark.parametrize(
    "fn", [_hide_coroutine(async_double), _late_coroutine], ids=["from the first", "later"]
)
async def test_map_of_sync_function_returning_a_coroutine_is_a_type_error(
    fn: Callable[[int], Any],
) -> None:
    """test_map_as/test_map_aa with ``hide_coroutine``, pinned difference: asyncstdlib
    awaits what a plain function returns; beluga_trio decides from the definition that the
    function is sync and raises a `TypeError` naming it, from whichever item first returns
    an awaitable (issue 10, case 10), rather than pass coroutine objects along as items."""
    with no_leaks():
        items, error = await bt.from_iterable(range(5)).map(fn).collect_result()
    for item in items:  # close any coroutine a broken version passed along
        if inspect.iscoroutine(item):
            item.close()
    assert isinstance(error, TypeError), f"no TypeError: got items {items!r}"
    assert getattr(fn, "__name__", "?") in str(error)
    assert not any(inspect.isawaitable(item) for item in items)


# ---------------------------------------------------------------------------------- filter


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("pred", [even, async_even], ids=["sync pred", "async pred"])
@pytest.mark.parametrize("xs", [range(5), range(5, 10, 2), range(4, 10, 2)], ids=str)
async def test_filter(
    source: Callable[[Sequence[int]], bt.Stream[int]],
    pred: Callable[[int], Any],
    xs: range,
) -> None:
    """test_filter_as, test_filter_sa, test_filter_aa: none, some or all items kept."""
    with no_leaks():
        assert await source(xs).filter(pred).collect() == [x for x in xs if x % 2 == 0]


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("xs", [range(5), range(5, 10, 2), range(-10, 10)], ids=str)
async def test_filter_none_keeps_truthy_items(
    source: Callable[[Sequence[int]], bt.Stream[int]], xs: range
) -> None:
    """test_filter_na: ``filter(None)`` keeps the truthy items, like the builtin."""
    keep_truthy: Any = None  # the typing of filter(None) is not this test's subject
    with no_leaks():
        got = await source(xs).filter(keep_truthy).collect()
    assert got == [x for x in xs if x]


# ------------------------------------------------------------------ islice: take and skip

ISLICE_SOURCES = [(), (1, 2, 3, 4), range(25), range(500)]
# (start, stop) of asyncstdlib's slicings that have no step; beluga_trio has no step.
SLICINGS = [(0, None), (0, 0), (0, 5), (5, 0), (5, None), (3, 50)]


def _sliced(s: bt.Stream[int], start: int, stop: int | None) -> bt.Stream[int]:
    s = s.skip(start)
    return s if stop is None else s.take(max(stop - start, 0))


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("xs", ISLICE_SOURCES, ids=lambda xs: f"len{len(xs)}")
@pytest.mark.parametrize("slicing", SLICINGS, ids=str)
async def test_islice_as_skip_and_take(
    source: Callable[[Sequence[int]], bt.Stream[int]],
    xs: Sequence[int],
    slicing: tuple[int, int | None],
) -> None:
    """test_islice: ``skip(start).take(stop - start)`` gives ``itertools.islice``'s items."""
    start, stop = slicing
    with no_leaks():
        got = await _sliced(source(xs), start, stop).collect()
    assert got == list(itertools.islice(xs, start, stop))


@pytest.mark.parametrize("slicing", [(0, 0), (0, 5), (5, 0), (3, 50)], ids=str)
async def test_take_asks_for_exactly_the_items_it_needs(slicing: tuple[int, int]) -> None:
    """test_islice_exact: over a producer that fails if asked for one item too many,
    ``skip(start).take(n)`` asks for exactly ``max(start, stop)`` items and never for
    another (lock-step producer, ``take`` stops its upstream once it has enough)."""
    start, stop = slicing
    count = max(start, stop)

    @bt.stream
    async def exactly() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        for i in range(count):
            yield i
        raise AssertionError("asked for one item too many")

    with no_leaks():
        got = await _sliced(exactly(), start, stop).collect()
    assert got == list(range(count))[start:stop]


async def test_consecutive_slices_of_one_shot_source() -> None:
    """test_islice_scoped_iter, pinned difference: asyncstdlib slices one borrowed iterator
    again and again, each slice going on where the last stopped. A `Stream` is cold: each
    terminal operation is a new opening, and a stream over a one-shot iterator refuses a
    second opening (`bt.StreamConsumedError`) instead of silently going on. Consecutive
    slices come from one opening: ``anext`` on its iterator."""
    s = bt.from_iterable(iter(range(10)))
    with no_leaks():
        assert await s.take(5).collect() == [0, 1, 2, 3, 4]
        with pytest.raises(bt.StreamConsumedError):
            await s.take(5).collect()

    with no_leaks():
        async with bt.from_iterable(iter(range(10))).open() as items:
            first = [await anext(items) for _ in range(5)]
            second = [await anext(items) for _ in range(5)]
    assert (first, second) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])


# ------------------------------------------------------------------------- batched: batch

BATCHED_CASES: list[tuple[range, int, list[list[int]]]] = [
    (range(10), 3, [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]),
    (range(10), 17, [list(range(10))]),
    (range(0), 2, []),
]


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize(("xs", "size", "expected"), BATCHED_CASES, ids=str)
async def test_batch(
    source: Callable[[Sequence[int]], bt.Stream[int]],
    xs: range,
    size: int,
    expected: list[list[int]],
) -> None:
    """test_batched: full batches, then the rest; none for an empty source."""
    with no_leaks():
        assert await source(xs).batch(size).collect() == expected


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_below_one_is_refused(size: int) -> None:
    """test_batched_invalid: a size below 1 is a `ValueError` naming it, at call time."""
    with pytest.raises(ValueError, match=str(size)):
        bt.from_iterable(range(10)).batch(size)


# ---------------------------------------------------------------------------------- reduce


def add(x: int, y: int) -> int:
    return x + y


async def async_add(x: int, y: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + y


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("fn", [add, async_add], ids=["sync fn", "async fn"])
@pytest.mark.parametrize(
    ("xs", "initial"),
    [([0, 1], 0), ([0, 1, 2, 3, 4, 0, -5], 0), ([1], 23), ([12], 0), ([], 42)],
    ids=str,
)
async def test_reduce(
    source: Callable[[Sequence[int]], bt.Stream[int]],
    fn: Callable[[int, int], Any],
    xs: list[int],
    initial: int,
) -> None:
    """test_reduce: the fold of ``functools.reduce``, sync or async, over a sync or async
    source; an empty stream gives the initial value."""
    with no_leaks():
        got = await source(xs).reduce(fn, initial)
    assert got == functools.reduce(add, xs, initial)


def test_reduce_needs_an_initial_value() -> None:
    """test_reduce_misuse, pinned difference: asyncstdlib (like ``functools.reduce``)
    raises `TypeError` when an empty iterable is reduced without an initial value;
    beluga_trio's ``reduce`` always takes the initial value, so that mistake cannot be
    written (a call without it is a `TypeError` at once, opening nothing)."""
    empty: list[int] = []
    reduce = cast("Callable[..., Awaitable[int]]", bt.from_iterable(empty).reduce)
    with pytest.raises(TypeError, match="initial"):
        reduce(add)


# ----------------------------------------------------------------------------- tee: fan_out


async def _collect(view: bt.Stream[int]) -> list[int]:
    return await view.collect()


ITEMS = [1, 2, 3, -5, 12, 78, -1, 111]


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
async def test_fan_out_every_consumer_sees_every_item(
    source: Callable[[Sequence[int]], bt.Stream[int]],
) -> None:
    """test_tee: three consumers each see every item, in order; results in consumer order."""
    with no_leaks():
        results = await bt.fan_out(source(ITEMS), _collect, _collect, _collect)
    assert results == [ITEMS, ITEMS, ITEMS]


@pytest.mark.parametrize("consumers", [1, 2, 4, 7])
async def test_fan_out_consumers_at_different_paces(
    autojump_clock: trio.testing.MockClock, consumers: int
) -> None:
    """test_tee_concurrent_locked, test_tee_share, test_tee_share_deep: consumers reading at
    different paces, switching tasks between items, each see every item in order; the
    source is read once."""
    reads: list[int] = []

    @bt.stream
    async def switching() -> AsyncIterator[int]:
        for item in ITEMS:
            await trio.sleep(0.01)  # switch to the others between items
            reads.append(item)
            yield item

    def paced(k: int) -> Callable[[bt.Stream[int]], Awaitable[list[int]]]:
        async def consume(view: bt.Stream[int]) -> list[int]:
            seen: list[int] = []
            async with view.open() as items:
                async for item in items:
                    seen.append(item)
                    await trio.sleep(0.01 * (k % 3))
            return seen

        return consume

    with no_leaks():
        results = await bt.fan_out(switching(), *(paced(k) for k in range(consumers)))
    assert results == [ITEMS] * consumers
    assert reads == ITEMS


async def test_fan_out_reads_an_async_generator_from_one_task() -> None:
    """test_tee_concurrent_unlocked, pinned difference: asyncstdlib's tee without a lock
    lets two peers step one async generator at once, which raises `RuntimeError`
    ("asynchronous generator is already running"). ``fan_out`` reads the source in one
    task, so an async generator that switches tasks between items is safe."""

    async def switching() -> AsyncIterator[int]:
        for item in range(12):
            for _ in range(5):
                await trio.lowlevel.checkpoint()
            yield item

    with no_leaks():
        results = await bt.fan_out(bt.from_iterable(switching()), _collect, _collect)
    assert results == [list(range(12))] * 2


class _InvertedSource:
    """An async iterator whose earlier items take longer, as asyncstdlib's
    ``ConcurrentInvertedIterable``: read concurrently, items complete in reverse order."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._counter = itertools.count()

    def __aiter__(self) -> _InvertedSource:
        return self

    async def __anext__(self) -> int:
        value = next(self._counter)
        if value >= self.count:
            raise StopAsyncIteration
        for _ in range(self.count - value):
            await trio.lowlevel.checkpoint()
        return value


@pytest.mark.parametrize("size", [2, 3, 5, 9, 12])
async def test_fan_out_consumers_agree_on_one_order(size: int) -> None:
    """test_tee_concurrent_ordering, pinned difference: asyncstdlib's peers step the source
    concurrently, so items complete in reverse order and every peer sees that order.
    ``fan_out`` asks the source for one item at a time, so every consumer sees the source's
    own order."""

    async def slow_collect(view: bt.Stream[int]) -> list[int]:
        seen: list[int] = []
        async with view.open() as items:
            async for item in items:
                seen.append(item)
                await trio.lowlevel.checkpoint()
        return seen

    with no_leaks():
        results = await bt.fan_out(
            bt.from_iterable(_InvertedSource(size)), *([slow_collect] * size)
        )
    assert results == [list(range(size))] * size


async def test_fan_out_is_bounded_by_the_slowest_consumer() -> None:
    """test_tee's buffer, pinned difference: asyncstdlib's tee buffers without bound for a
    peer that lags behind; ``fan_out``'s slowest consumer sets the pace, so the source runs
    at most about ``capacity`` items ahead of it, and memory does not grow with the stream."""
    started: list[int] = []

    @bt.stream
    async def many() -> AsyncIterator[int]:  # noqa: ASYNC124 - a @bt.stream body is an async generator
        for i in range(1000):
            started.append(i)
            yield i

    ahead_of_laggard: list[int] = []

    async def laggard(view: bt.Stream[int]) -> list[int]:
        seen: list[int] = []
        async with view.open() as items:
            seen.append(await anext(items))
            await trio.testing.wait_all_tasks_blocked()
            ahead_of_laggard.append(len(started) - len(seen))
            seen.extend([item async for item in items])
        return seen

    with no_leaks():
        results = await bt.fan_out(many(), _collect, laggard, capacity=4)
    assert results == [list(range(1000))] * 2
    assert ahead_of_laggard
    assert ahead_of_laggard[0] <= 4 + 2, ahead_of_laggard


@pytest.mark.parametrize("error_first", [True, False], ids=["error first", "interrupt first"])
async def test_fan_out_keyboard_interrupt_with_a_concurrent_error_is_not_grouped(
    error_first: bool,
) -> None:
    """test_tee, with two consumers failing at the same moment, one with
    ``KeyboardInterrupt`` (issue 10, case 4): ``fan_out`` raises it as itself, never in a
    group, never dropped, and the other error hangs off it."""

    async def scenario(
        together: RaiseTogether, error: BaseException, interrupt: BaseException
    ) -> None:
        def failing(exc: BaseException) -> Callable[[bt.Stream[int]], Awaitable[list[int]]]:
            async def consume(view: bt.Stream[int]) -> list[int]:
                async with view.open() as items:
                    await anext(items)
                    await together.raise_(exc)
                return []  # pragma: no cover

            return consume

        await bt.fan_out(bt.from_iterable(ITEMS), failing(error), failing(interrupt))

    await assert_interrupt_comes_first(scenario, error_first=error_first)
