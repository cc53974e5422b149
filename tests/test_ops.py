"""zip, chain, flat_map, switch_map, scan, distinct_until_changed, catch, retry, debounce and
throttle: their semantics (the peers' own tests and documented marble diagrams, re-expressed
here on trio's virtual clock), their argument checks, and the library's guarantees for each:
an error arrives as itself, leaving stops everything, a cancelled request loses nothing and
calls no user function twice.

Peers, in our words:

* aiostream ``tests/test_combine.py`` (zip, chain), ``tests/test_advanced.py`` (flatmap with
  task limits, switchmap), ``tests/test_aggregate.py`` (accumulate);
* Kotlin Flow's documented examples of ``debounce``, ``sample`` and ``flatMapLatest``;
* RxPY's ``throttle_first`` marble diagram.

aiostream's ``stream.range(start, stop, step, interval=i)`` yields its first item at once and
each next one ``i`` seconds later; `spaced` below is the same source as a lock-step
``@bt.stream`` (it sleeps only when asked for the next item, which is when aiostream's
consumer asks too, in these tests).
"""

# ruff: noqa: RUF100, RUF102

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import pytest
import trio
import trio.testing
from _helpers import raised_by

import beluga_trio as bt
from beluga_trio.testing import ScriptedError, ScriptedProducer, no_leaks

T = TypeVar("T")


def spaced(start: int, stop: int, step: int = 1, *, interval: float = 0.0) -> bt.Stream[int]:
    """aiostream's ``stream.range(start, stop, step, interval=interval)``."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        for i, x in enumerate(range(start, stop, step)):
            if i and interval:
                await trio.sleep(interval)
            yield x

    return produce()


def marble(*events: tuple[float, T], end: float | None = None) -> bt.Stream[T]:
    """Items at absolute times (seconds after the first request), then the end (at ``end``,
    or right after the last item)."""

    @bt.stream
    async def produce() -> AsyncGenerator[T, None]:
        t0 = trio.current_time()
        for at, item in events:
            await trio.sleep_until(t0 + at)
            yield item
        if end is not None:
            await trio.sleep_until(t0 + end)

    return produce()


async def timed(stream: bt.Stream[T]) -> list[tuple[float, T]]:
    """Every item with the virtual time (from the opening) at which the consumer got it."""
    t0 = trio.current_time()
    async with stream.open() as items:
        got = [(round(trio.current_time() - t0, 6), x) async for x in items]
    return got


def gaps(times: Sequence[float]) -> list[float]:
    """aiostream's ``loop.steps``: the non-zero time differences between items."""
    return [round(b - a, 6) for a, b in itertools.pairwise(times) if b != a]


# ---------------------------------------------------------------------------------- zip


async def test_zip_pairs_in_lock_step_and_ends_with_the_shortest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # aiostream test_zip: three zipped copies of range(5) with a resource each.
    xs = spaced(0, 5)
    assert await bt.zip(xs, xs, xs).collect() == [(x, x, x) for x in range(5)]
    assert await bt.zip(bt.from_iterable(range(2)), bt.from_iterable(range(1))).collect() == [
        (0, 0)
    ]
    assert await bt.zip().collect() == []  # aiostream issue #95


async def test_zip_stops_the_other_sources_before_delivering_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    long = ScriptedProducer.counting()
    short = ScriptedProducer.counting(2)
    async with bt.zip(long.stream(), short.stream()).open() as items:
        assert [x async for x in items] == [(0, 0), (1, 1)]
        # The end was delivered after the endless source had stopped.
        assert long.cleanups == 1
        assert short.cleanups == 1


async def test_zip_error_arrives_as_itself(autojump_clock: trio.testing.MockClock) -> None:
    # aiostream: exceptions from the zipped iterables are propagated.
    err = AttributeError("from a source")

    @bt.stream
    async def throws() -> AsyncGenerator[int, None]:  # noqa: ASYNC124 - an async generator for the test, on purpose
        raise err
        yield 0  # pragma: no cover

    raised = await raised_by(bt.zip(bt.from_iterable(range(2)), throws()).collect)
    assert raised is err


async def test_zip_keeps_the_partial_tuple_across_a_cancelled_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = ScriptedProducer(range(3), delay=1.0)
    b = ScriptedProducer(range(10, 13), delay=5.0)
    async with bt.zip(a.stream(), b.stream()).open() as items:
        with trio.move_on_after(3):  # a's item is in the slot; b's is in flight
            await anext(items)
        assert [x async for x in items] == [(0, 10), (1, 11), (2, 12)]
    assert a.last.yielded == [0, 1, 2]


async def test_zip_of_sync_sources_keeps_the_partial_tuple_when_a_stage_yields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The second source rejects 1000 items in a row: its filter asks for schedule points
    # (raising Yield through the fused chain) while the first source's item waits.
    evens = bt.from_iterable(range(3000)).filter(lambda x: x % 1000 == 0)
    got = await bt.zip(bt.from_iterable("abc"), evens).collect()
    assert got == [("a", 0), ("b", 1000), ("c", 2000)]


# -------------------------------------------------------------------------------- chain


async def test_chain_concatenates(autojump_clock: trio.testing.MockClock) -> None:
    # aiostream test_chain.
    assert await bt.chain(spaced(0, 5), spaced(5, 10)).collect() == list(range(10))
    assert await bt.chain().collect() == []
    assert await bt.chain(bt.from_iterable([1]), bt.from_iterable("ab")).collect() == [1, "a", "b"]


async def test_chain_opens_each_source_after_the_one_before_has_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []

    def source(name: str) -> bt.Stream[str]:
        @bt.stream
        async def produce() -> AsyncGenerator[str, None]:
            log.append(f"open {name}")
            try:
                yield name
            finally:
                await trio.sleep(1)  # an awaiting cleanup  # noqa: ASYNC102 - an awaiting cleanup, on purpose
                log.append(f"closed {name}")

        return produce()

    async with bt.chain(source("a"), source("b")).open() as items:
        assert await anext(items) == "a"
        assert log == ["open a"]  # b is not opened before a has ended
        assert await anext(items) == "b"
        assert log == ["open a", "closed a", "open b"]
    assert log[-1] == "closed b"


async def test_chain_error_ends_it_and_later_sources_never_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    later = ScriptedProducer.counting()
    raised = await raised_by(
        bt.chain(ScriptedProducer(range(2), raise_before=1).stream(), later.stream()).collect
    )
    assert isinstance(raised, ScriptedError)
    assert later.opened == 0


# ----------------------------------------------------------------------------- flat_map


async def test_flat_map_sequential_aiostream(autojump_clock: trio.testing.MockClock) -> None:
    # aiostream test_flatmap "sequential run" (task_limit=1).
    ys = spaced(0, 6, 2, interval=1).flat_map(lambda x: spaced(x, x + 2, interval=5))
    got = await timed(ys)
    assert [x for _, x in got] == [0, 1, 2, 3, 4, 5]
    assert gaps([t for t, _ in got]) == [5, 1, 5, 1, 5]


async def test_flat_map_concurrent_aiostream(autojump_clock: trio.testing.MockClock) -> None:
    # aiostream test_flatmap "concurrent run" and "limited run" (task_limit=2).
    def inner(x: int) -> bt.Stream[int]:
        return spaced(x, x + 2, interval=5)

    got = await timed(spaced(0, 6, 2, interval=1).flat_map(inner, concurrency=10))
    assert [x for _, x in got] == [0, 2, 4, 1, 3, 5]
    assert gaps([t for t, _ in got]) == [1, 1, 3, 1, 1]

    got = await timed(spaced(0, 6, 2, interval=1).flat_map(inner, concurrency=2))
    assert [x for _, x in got] == [0, 2, 1, 3, 4, 5]
    assert gaps([t for t, _ in got]) == [1, 4, 1, 5]


class _Lines(list[int]):
    """A list subclass (not a built-in type) whose iterator is a generator to be closed."""

    log: list[str]
    kept: list[Iterator[int]]  # alive: only an explicit close runs the finally

    def __iter__(self) -> Iterator[int]:
        it = self._items()
        self.kept.append(it)
        return it

    def _items(self) -> Iterator[int]:
        try:
            yield from super().__iter__()
        finally:
            self.log.append(f"closed {self[0]}")


@pytest.mark.parametrize("leave_after", [None, 1, 4])
async def test_flat_map_closes_each_inner_source_before_the_next(leave_after: int | None) -> None:
    # Inner streams over built-in collections open with nothing to stop; one whose iterator
    # is a generator is closed (its finally has run) before the next item's stream opens,
    # also when the consumer leaves in the middle of one.
    log: list[str] = []
    kept: list[Iterator[int]] = []

    def inner(x: int) -> bt.Stream[int]:
        if x % 2:
            return bt.from_iterable(range(x * 10, x * 10 + 3))
        lines = _Lines([x * 10, x * 10 + 1, x * 10 + 2])
        lines.log, lines.kept = log, kept

        def seen(y: int) -> int:
            log.append(f"item {y}")
            return y

        return bt.from_iterable(lines).map(seen)

    ys = bt.from_iterable([0, 1, 2]).flat_map(inner)
    got: list[int] = []
    with no_leaks():
        async with ys.open() as items:
            async for y in items:
                got.append(y)
                if len(got) == leave_after:
                    break
    assert got == [0, 1, 2, 10, 11, 12, 20, 21, 22][: leave_after or 9]
    first = ["item 0", "item 1", "item 2", "closed 0"]
    if leave_after is None:
        assert log == [*first, "item 20", "item 21", "item 22", "closed 20"]
    elif leave_after == 1:
        assert log == ["item 0", "closed 0"]  # closed by leaving, in the middle
    else:
        assert log == first


async def test_a_built_in_collection_is_read_in_chunks_with_schedule_points_and_errors() -> None:
    # A bare built-in source is read at C speed, SCHEDULE_EVERY items at most between two
    # schedule points: another task runs in between (here it changes the dict being read),
    # and the error the dict then raises arrives after every item read before it.
    d = {i: i for i in range(1000)}

    async def meddle() -> None:
        await trio.lowlevel.checkpoint()
        d[-1] = -1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(meddle)
        got, raised = await bt.from_iterable(d).collect_result()
    assert isinstance(raised, RuntimeError)
    assert "changed size during iteration" in str(raised)
    assert got == list(range(len(got)))
    assert 0 < len(got) < 1000


async def test_flat_map_never_runs_more_than_n_inner_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    running = peak = 0

    def inner(x: int) -> bt.Stream[int]:
        @bt.stream
        async def produce() -> AsyncGenerator[int, None]:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                await trio.sleep(1 + x % 3)
                yield x
            finally:
                running -= 1

        return produce()

    got = await bt.from_iterable(range(20)).flat_map(inner, concurrency=3).collect()
    assert sorted(got) == list(range(20))
    assert peak == 3


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_flat_map_calls_fn_once_per_item_under_cancelled_requests(
    concurrency: int, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[int] = []

    def inner(x: int) -> bt.Stream[int]:
        calls.append(x)
        return spaced(10 * x, 10 * x + 2, interval=1)

    stream = spaced(0, 4, interval=0.5).flat_map(inner, concurrency=concurrency)
    got: list[int] = []
    async with stream.open() as items:
        while True:
            with trio.move_on_after(0.3):
                try:
                    got.append(await anext(items))
                except StopAsyncIteration:
                    break
    assert sorted(got) == sorted(x for i in range(4) for x in (10 * i, 10 * i + 1))
    if concurrency == 1:
        assert got == [0, 1, 10, 11, 20, 21, 30, 31]
    assert calls == [0, 1, 2, 3]


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_flat_map_inner_error_arrives_as_itself_and_stops_the_rest(
    concurrency: int, autojump_clock: trio.testing.MockClock
) -> None:
    err = ValueError("inner")
    sources = {0: ScriptedProducer.counting(2, delay=1), 2: ScriptedProducer.counting(delay=1)}

    def inner(x: int) -> bt.Stream[int]:
        if x == 1:
            return ScriptedProducer([100], raise_before=1, error=err).stream()
        return sources[x].stream()

    with no_leaks():
        raised = await raised_by(
            bt.from_iterable(range(3)).flat_map(inner, concurrency=concurrency).collect
        )
    assert raised is err
    assert all(p.opened == p.cleanups for p in sources.values())


async def test_flat_map_leaving_stops_every_inner_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probes = [ScriptedProducer.counting(delay=1) for _ in range(3)]
    stream = bt.from_iterable(range(3)).flat_map(lambda i: probes[i].stream(), concurrency=3)
    with no_leaks():
        async with stream.open() as items:
            await anext(items)
    assert [p.opened for p in probes] == [1, 1, 1]
    assert [p.cleanups for p in probes] == [1, 1, 1]


# --------------------------------------------------------------------------- switch_map


async def test_switch_map_aiostream(autojump_clock: trio.testing.MockClock) -> None:
    # aiostream test_switchmap, the outer stream 2.5 s apart instead of 3 (a tie between an
    # outer and an inner item has no defined winner in either library).
    got = await timed(
        spaced(0, 30, 10, interval=2.5).switch_map(lambda x: spaced(x, x + 5, interval=1))
    )
    assert [x for _, x in got] == [0, 1, 2, 10, 11, 12, 20, 21, 22, 23, 24]
    # Its "cleanup procedure" case: take 3 and stop.
    got = await timed(
        spaced(0, 5, interval=1).switch_map(lambda x: spaced(x, x + 2, interval=2)).take(3)
    )
    assert got == [(0, 0), (1, 1), (2, 2)]


async def test_switch_map_kotlin_flat_map_latest(autojump_clock: trio.testing.MockClock) -> None:
    # Kotlin's flatMapLatest documentation: flow { emit("a"); delay(100); emit("b") }
    #     .flatMapLatest { v -> flow { emit(v); delay(200); emit(v + "_last") } }
    # produces a b b_last.
    outer = marble((0.0, "a"), (0.1, "b"))

    def inner(v: str) -> bt.Stream[str]:
        return marble((0.0, v), (0.2, v + "_last"))

    assert await outer.switch_map(inner).collect() == ["a", "b", "b_last"]


async def test_switch_map_previous_cleanup_runs_before_the_next_inner_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []

    def inner(v: str) -> bt.Stream[str]:
        @bt.stream
        async def reply() -> AsyncGenerator[str, None]:
            log.append(f"start {v}")
            try:
                for i in range(3):
                    yield f"{v}{i}"
                    await trio.sleep(1)
            finally:
                log.append(f"cleanup {v} begins")
                # A cleanup that awaits though cancelled (p is interrupted mid-item): the next
                # reply still waits for it.
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.5)
                log.append(f"cleanup {v} done")

        return reply()

    got = await marble((0, "p"), (1.5, "q")).switch_map(inner).collect()
    assert got == ["p0", "p1", "q0", "q1", "q2"]
    assert log == [
        "start p",
        "cleanup p begins",
        "cleanup p done",
        "start q",
        "cleanup q begins",
        "cleanup q done",
    ]


async def test_switch_map_outer_error_cancels_the_inner_and_arrives_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("outer")
    probe = ScriptedProducer.counting(delay=0.3)
    outer = ScriptedProducer([0], raise_before=1, error=err, delay=1)
    with no_leaks():
        raised = await raised_by(outer.stream().switch_map(lambda _: probe.stream()).collect)
    assert raised is err
    assert probe.cleanups == 1


async def test_switch_map_calls_fn_once_per_item(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[int] = []

    def inner(x: int) -> bt.Stream[int]:
        calls.append(x)
        return bt.from_iterable([x])

    assert await spaced(0, 4, interval=1).switch_map(inner).collect() == [0, 1, 2, 3]
    assert calls == [0, 1, 2, 3]


async def test_switch_map_delivers_no_item_of_the_previous_inner_stream_after_a_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The consumer asks for its next item at the very moment the next outer item arrives:
    # whichever trio runs first, no item of inner stream 0 arrives once the driver has taken
    # outer item 1 (found by review: one handed over in that instant, or while the inner
    # stream was being stopped, came after the switch). A few runs: trio shuffles ready tasks.
    async def one_run() -> list[tuple[str, int]]:
        seq: list[tuple[str, int]] = []

        @bt.stream
        async def outer() -> AsyncGenerator[int, None]:
            yield 0
            await trio.sleep(1)
            yield 1

        def taken(x: int) -> int:
            seq.append(("outer", x))
            return x

        def inner(x: int) -> bt.Stream[int]:
            return bt.from_iterable(range(x * 100, x * 100 + 100))

        with no_leaks():
            async with outer().map(taken).switch_map(inner).open() as items:
                async for y in items:
                    seq.append(("item", y))
                    await trio.sleep(0.25)
                    if y >= 100:
                        break
        return seq

    for _ in range(10):
        seq = await one_run()
        after = seq[seq.index(("outer", 1)) :]
        assert [y for kind, y in after if kind == "item" and y < 100] == [], seq


async def test_switch_map_outer_error_is_not_lost_when_the_inner_stream_fails_too() -> None:
    # The outer stream fails at its 2nd item while the inner stream of its 1st, handed over
    # but not started, fails as it starts: both errors arrive (found by review: the driver
    # waited for that inner stream to stop, was cancelled by its failure, and dropped its own).
    outer_error = ScriptedError("outer at 1")
    inner_errors: list[ScriptedError] = []

    def outer_item(v: int) -> int:
        if v == 1:
            raise outer_error
        return v

    def fail(v: int) -> int:
        inner_errors.append(ScriptedError(f"inner {v}"))
        raise inner_errors[-1]

    stream = (
        bt.from_iterable([0, 1])
        .map(outer_item)
        .switch_map(lambda x: bt.from_iterable([x]).map(fail))
    )
    with no_leaks():
        raised = await raised_by(stream.collect)
    assert isinstance(raised, ExceptionGroup)
    group = cast("ExceptionGroup[Exception]", raised)
    assert {id(e) for e in group.exceptions} == {id(outer_error), *map(id, inner_errors)}


@pytest.mark.parametrize("source", ["sync", "producer"])
async def test_switch_map_over_a_burst_runs_the_last_inner_stream_to_its_end(source: str) -> None:
    # The outer stream's items all arrive at once, then it ends: whatever ran of the earlier
    # inner streams came in order and each stopped before the next started, fn was called once
    # per item, and the last item's stream is delivered whole.
    calls: list[int] = []
    log: list[str] = []

    def inner(x: int) -> bt.Stream[int]:
        calls.append(x)

        @bt.stream
        async def items() -> AsyncGenerator[int, None]:  # noqa: ASYNC124 - a burst, no wait
            log.append(f"start {x}")
            try:
                for i in range(3):
                    yield x * 10 + i
            finally:
                log.append(f"stop {x}")

        return items()

    outer = bt.from_iterable(range(20))
    if source == "producer":
        outer = ScriptedProducer(list(range(20)), checkpoint=False).stream()
    with no_leaks():
        got = await outer.switch_map(inner).collect()
    assert calls == list(range(20))
    assert got[-3:] == [190, 191, 192]
    assert got == sorted(got)
    started = [int(entry.split()[1]) for entry in log[::2]]
    assert started == sorted(started)
    assert started[-1] == 19
    assert log == [entry for x in started for entry in (f"start {x}", f"stop {x}")]


# --------------------------------------------------------------------------------- scan


async def test_scan_aiostream_accumulate(autojump_clock: trio.testing.MockClock) -> None:
    assert await spaced(2, 4).scan(lambda a, x: a * x, 2).collect() == [2, 4, 12]
    assert await spaced(0, 0).scan(lambda a, x: a + x, 0).collect() == [0]  # initial first
    assert await bt.from_iterable(range(5)).scan(lambda a, x: a + x, 0).collect() == [
        0,
        0,
        1,
        3,
        6,
        10,
    ]

    async def sleepmax(a: int, x: int) -> int:
        await trio.sleep(1)
        return max(a, x)

    got = await timed(spaced(0, 3).scan(sleepmax, 0))
    assert got == [(0, 0), (1, 0), (2, 1), (3, 2)]


async def test_async_scan_calls_fn_once_per_item_under_cancelled_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[int] = []

    async def slow_add(a: int, x: int) -> int:
        calls.append(x)
        await trio.sleep(1)
        return a + x

    got: list[int] = []
    async with bt.from_iterable(range(5)).scan(slow_add, 0).open() as items:
        while True:
            with trio.move_on_after(0.3):  # shorter than a call: it must still make progress
                try:
                    got.append(await anext(items))
                except StopAsyncIteration:
                    break
    assert got == [0, 0, 1, 3, 6, 10]
    assert calls == [0, 1, 2, 3, 4]


async def test_scan_rejects_a_sync_function_that_returns_an_awaitable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def add(a: int, x: int) -> int:  # noqa: ASYNC124 - an async generator for the test, on purpose
        return a + x

    with pytest.raises(TypeError, match="not declared `async def`"):
        # A sync lambda that returns a coroutine, on purpose.
        await bt.from_iterable([1]).scan(lambda a, x: add(a, x), 0).collect()  # noqa: PLW0108


# --------------------------------------------------------------- distinct_until_changed


async def test_distinct_until_changed(autojump_clock: trio.testing.MockClock) -> None:
    xs = [1, 1, 2, 2, 2, 1, 3, 3]
    assert await bt.from_iterable(xs).distinct_until_changed().collect() == [1, 2, 1, 3]
    assert await spaced(0, 0).distinct_until_changed().collect() == []
    words = bt.from_iterable(["a", "A", "b", "B", "a"])
    assert await words.distinct_until_changed(key=str.lower).collect() == ["a", "b", "a"]
    async with bt.from_iterable(xs).map(lambda x: x).distinct_until_changed().open() as items:
        assert [x async for x in items] == [1, 2, 1, 3]
    probe = ScriptedProducer(xs)
    assert await probe.stream().distinct_until_changed().collect() == [1, 2, 1, 3]


async def test_distinct_until_changed_calls_key_once_per_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[int] = []

    def key(x: int) -> int:
        seen.append(x)
        return x // 2

    assert await bt.from_iterable(range(6)).distinct_until_changed(key=key).collect() == [0, 2, 4]
    assert seen == list(range(6))


async def test_distinct_until_changed_over_endless_repeats_is_cancellable() -> None:
    # Every item equal to the first: only schedule points let a deadline through (a real
    # clock: a virtual one never advances while a task is busy).
    with trio.move_on_after(0.05) as cs:
        await bt.from_iterable(iter(int, 1)).distinct_until_changed().collect()
    assert cs.cancelled_caught


# -------------------------------------------------------------------------------- catch


async def test_catch_passes_the_very_error_and_goes_on_with_the_handlers_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("boom")
    seen: list[BaseException] = []

    def handler(exc: Exception) -> bt.Stream[str]:
        seen.append(exc)
        return bt.from_iterable(["fallback"])

    source = ScriptedProducer(["a", "b"], raise_before=2, error=err)
    assert await source.stream().catch(handler).collect() == ["a", "b", "fallback"]
    assert len(seen) == 1
    assert seen[0] is err


async def test_catch_stops_the_failed_upstream_before_opening_the_handlers_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []

    @bt.stream
    async def failing() -> AsyncGenerator[int, None]:
        try:
            yield 1
            raise ValueError("upstream")
        finally:
            await trio.sleep(1)  # noqa: ASYNC102 - an awaiting cleanup, on purpose
            log.append("upstream cleaned up")

    @bt.stream
    async def fallback() -> AsyncGenerator[int, None]:  # noqa: ASYNC124 - an async generator for the test, on purpose
        log.append("fallback opened")
        yield 2

    assert await failing().catch(lambda _: fallback()).collect() == [1, 2]
    assert log == ["upstream cleaned up", "fallback opened"]


async def test_catch_handler_may_re_raise(autojump_clock: trio.testing.MockClock) -> None:
    err = KeyError("upstream")

    def handler(exc: Exception) -> bt.Stream[int]:
        raise exc

    source = ScriptedProducer([1], raise_before=1, error=err)
    assert await raised_by(source.stream().catch(handler).collect) is err


async def test_catch_never_catches_cancellation_or_keyboard_interrupt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[BaseException] = []

    def handler(exc: Exception) -> bt.Stream[int]:
        calls.append(exc)
        return bt.from_iterable([0])

    with trio.move_on_after(1) as cs:
        await ScriptedProducer.counting(delay=0.4).stream().catch(handler).collect()
    assert cs.cancelled_caught

    source = ScriptedProducer([1], raise_before=1, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        await source.stream().catch(handler).collect()
    assert calls == []


async def test_catch_does_not_catch_errors_of_the_handlers_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("second")
    second = ScriptedProducer([2], raise_before=1, error=err)
    first = ScriptedProducer([1], raise_before=1)
    raised = await raised_by(first.stream().catch(lambda _: second.stream()).collect)
    assert raised is err


async def test_catch_with_a_timeout_upstream(autojump_clock: trio.testing.MockClock) -> None:
    slow = ScriptedProducer.counting(delay=10).stream().timeout(first=1)
    got = await slow.catch(lambda e: bt.from_iterable([type(e).__name__])).collect()
    assert got == ["TooSlowError"]


# -------------------------------------------------------------------------------- retry


async def test_retry_reopens_until_an_attempt_succeeds_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempt = 0
    opened_at: list[float] = []

    @bt.stream
    async def flaky() -> AsyncGenerator[str, None]:  # noqa: ASYNC124 - an async generator for the test, on purpose
        nonlocal attempt
        attempt += 1
        opened_at.append(trio.current_time())
        if attempt < 3:
            raise ConnectionError(f"attempt {attempt}")
        yield "ok"

    delays: list[int] = []

    def backoff(n: int) -> float:
        delays.append(n)
        return 0.5 * 2.0 ** (n - 1)

    assert await flaky().retry(5, backoff=backoff).collect() == ["ok"]
    assert delays == [1, 2]  # called once per retry
    assert [round(b - a, 6) for a, b in itertools.pairwise(opened_at)] == [0.5, 1.0]


async def test_retry_never_after_an_item_reached_the_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("after the first item")
    source = ScriptedProducer(["a"], raise_before=1, error=err)
    got, error = await source.stream().retry(5).collect_result()
    assert got == ["a"]
    assert error is err
    assert source.opened == 1


async def test_retry_gives_up_after_its_attempts_with_the_last_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = ScriptedProducer([1], raise_before=0)
    raised = await raised_by(source.stream().retry(3, backoff=1).collect)
    assert isinstance(raised, ScriptedError)
    assert source.opened == 3
    assert source.last.exception is raised
    assert "attempt 3 of 3" in raised.__notes__[0]
    source.assert_cleaned_up()


async def test_retry_only_retries_the_errors_named_by_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = ScriptedProducer([1], raise_before=0, error=KeyError)
    with pytest.raises(KeyError):
        await source.stream().retry(3, on=(ValueError, OSError)).collect()
    assert source.opened == 1


async def test_retry_closes_the_failed_attempt_before_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    attempt = 0

    @bt.stream
    async def flaky() -> AsyncGenerator[int, None]:
        nonlocal attempt
        attempt += 1
        log.append(f"open {attempt}")
        try:
            if attempt == 1:
                raise OSError("first")
            yield attempt
        finally:
            await trio.sleep(1)  # noqa: ASYNC102 - an awaiting cleanup, on purpose
            log.append(f"closed {attempt}")

    assert await flaky().retry(2).collect() == [2]
    assert log == ["open 1", "closed 1", "open 2", "closed 2"]


async def test_retry_a_one_shot_source_says_so(autojump_clock: trio.testing.MockClock) -> None:
    async def once() -> AsyncGenerator[int, None]:  # noqa: ASYNC124 - an async generator for the test, on purpose
        raise OSError("down")
        yield 0  # pragma: no cover

    with pytest.raises(bt.StreamConsumedError):
        await bt.from_iterable(once()).retry(2).collect()


async def test_retry_waits_out_its_backoff_across_cancelled_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = ScriptedProducer(["x"], raise_before=0)
    flaky = source.stream().retry(2, backoff=5, on=ScriptedError)
    async with flaky.open() as items:
        t0 = trio.current_time()
        for _ in range(3):
            with trio.move_on_after(1):
                await anext(items)
        with pytest.raises(ScriptedError):
            await anext(items)
        assert trio.current_time() - t0 == pytest.approx(5)  # not 3 + 5
    assert source.opened == 2


# ----------------------------------------------------------------------------- debounce


async def test_debounce_kotlin_example(autojump_clock: trio.testing.MockClock) -> None:
    # Kotlin's debounce documentation: emit 1, delay 90, emit 2, delay 90, emit 3,
    # delay 1010, emit 4, delay 1010, emit 5; debounce(1000) produces 3, 4, 5.
    source = marble((0.0, 1), (0.09, 2), (0.18, 3), (1.19, 4), (2.2, 5))
    got = await timed(source.debounce(1.0))
    assert got == [(1.18, 3), (2.19, 4), (2.2, 5)]  # 5 at the end of the source, at once


async def test_debounce_rxjs_style_bursts(autojump_clock: trio.testing.MockClock) -> None:
    # Bursts separated by silences longer than the window: the last of each burst.
    source = marble((0, "a"), (0.1, "b"), (0.2, "c"), (1.0, "d"), (2.0, "e"), (2.05, "f"), end=5)
    assert await timed(source.debounce(0.5)) == [(0.7, "c"), (1.5, "d"), (2.55, "f")]


async def test_debounce_delivers_the_held_item_before_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("late")
    source = ScriptedProducer([1, 2], raise_before=2, error=err, delay=0.1)
    got, error = await source.stream().debounce(1).collect_result()
    assert got == [2]
    assert error is err


# ----------------------------------------------------------------------------- throttle


async def test_throttle_latest_kotlin_sample_plus_the_leading_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Kotlin's sample documentation: repeat(10) { emit(it); delay(110) } sampled every 200
    # produces 1, 3, 5, 7, 9. throttle(keep="latest") also delivers the leading item 0, then
    # the latest item of each period of 200 ms.
    source = marble(*((0.11 * i, i) for i in range(10)), end=1.1)
    got = await timed(source.throttle(0.2))
    assert [x for _, x in got] == [0, 1, 3, 5, 7, 9]
    times = [t for t, _ in got]
    assert all(b - a >= 0.2 - 1e-9 for a, b in itertools.pairwise(times))


async def test_throttle_first_rxpy_marble(autojump_clock: trio.testing.MockClock) -> None:
    # RxPY's throttle_first marble: -1-2-3-4-5-6-| with a window of 2 ticks gives -1---3---5-|
    source = marble(*((float(i), i) for i in range(1, 7)))
    assert await timed(source.throttle(2, keep="first")) == [(1, 1), (3, 3), (5, 5)]


async def test_throttle_first_over_a_sync_source_stays_cancellable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Over a sync source the dropping runs in the fused chain: every item arrives at once.
    assert await bt.from_iterable(range(1000)).throttle(10, keep="first").collect() == [0]
    # Dropping 100,000 items still takes a schedule point every SCHEDULE_EVERY of them: a
    # sibling task runs meanwhile.
    turns = 0

    async def sibling() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sibling)
        await trio.lowlevel.checkpoint()
        before = turns
        ys = bt.from_iterable(range(100_000)).throttle(10, keep="first")
        assert await ys.collect() == [0]
        assert turns - before >= 100_000 // 256 - 2
        nursery.cancel_scope.cancel()
    got = await bt.zip(
        bt.from_iterable("ab"), bt.from_iterable(range(3)).throttle(10, keep="first")
    ).collect()
    assert got == [("a", 0)]


async def test_throttle_latest_holds_the_last_item_until_its_period_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = marble((0, "a"), (0.1, "b"), (0.2, "c"))
    assert await timed(source.throttle(1)) == [(0, "a"), (1, "c")]


async def test_throttle_leading_item_after_a_quiet_period_goes_through_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = marble((0, "a"), (5, "b"))
    assert await timed(source.throttle(1)) == [(0, "a"), (5, "b")]


# ------------------------------------------------------------------ leaving stops all

OPERATORS: dict[str, Callable[[bt.Stream[int]], bt.Stream[Any]]] = {
    "zip": lambda s: bt.zip(s, ScriptedProducer.counting(delay=0.5).stream()),
    "chain": lambda s: bt.chain(s, s),
    "flat_map": lambda s: s.flat_map(lambda x: bt.from_iterable([x, x])),
    "flat_map-3": lambda s: s.flat_map(lambda x: bt.from_iterable([x, x]), concurrency=3),
    "switch_map": lambda s: s.switch_map(lambda x: spaced(x, x + 2, interval=0.1)),
    "scan": lambda s: s.scan(lambda a, x: a + x, 0),
    "distinct": lambda s: s.distinct_until_changed(),
    "catch": lambda s: s.catch(lambda _: bt.from_iterable([0])),
    "retry": lambda s: s.retry(3),
    "debounce": lambda s: s.debounce(0.1),
    "throttle": lambda s: s.throttle(0.1),
    "throttle-first": lambda s: s.throttle(0.1, keep="first"),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
async def test_leaving_after_one_item_stops_everything(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    with no_leaks():
        async with OPERATORS[name](probe.stream()).open() as items:
            await anext(items)
            await anext(items)
        assert probe.opened == probe.cleanups
    assert probe.opened >= 1


@pytest.mark.parametrize("name", sorted(OPERATORS))
async def test_a_cancelled_consumer_never_sees_a_clean_end(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    after_loop = False
    with no_leaks(), trio.move_on_after(2.5) as cs:
        async with OPERATORS[name](probe.stream()).open() as items:
            async for _ in items:
                pass
            after_loop = True
    assert cs.cancelled_caught
    assert not after_loop
    assert probe.opened == probe.cleanups


@pytest.mark.parametrize("name", sorted(OPERATORS))
async def test_an_error_arrives_as_itself(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    if name in ("catch", "retry"):
        pytest.skip("they handle the upstream's errors: see their own tests")
    group = ExceptionGroup("the producer's own", [KeyError("inside")])
    source = ScriptedProducer([1, 2], raise_before=2, error=group, delay=0.3)
    raised = await raised_by(OPERATORS[name](source.stream()).collect)
    assert raised is group


# ---------------------------------------------------------------------- argument checks


async def returns_stream(x: object) -> bt.Stream[int]:
    await trio.lowlevel.checkpoint()
    return bt.from_iterable([1])


# Built through Any: these calls are wrong on purpose, and the type checkers say so.
ANY: Any = bt.from_iterable([1])
BT: Any = bt

BAD: list[tuple[Callable[[], object], type[Exception], str]] = [
    (
        lambda: BT.zip(bt.from_iterable([1]), [1, 2]),
        TypeError,
        r"zip\(\) argument 2 needs a beluga_trio Stream, got \[1, 2\]",
    ),
    (
        lambda: BT.chain("ab"),
        TypeError,
        r"chain\(\) argument 1 needs a beluga_trio Stream, got 'ab'",
    ),
    (
        lambda: ANY.flat_map(3),
        TypeError,
        r"flat_map\(\) needs fn to be a function, got int 3",
    ),
    (
        lambda: ANY.flat_map(returns_stream),
        TypeError,
        r"flat_map\(\) needs fn to be a plain \(not `async def`\) function, got "
        r"'returns_stream'; put the async work inside the stream it returns",
    ),
    (
        lambda: ANY.flat_map(bt.from_iterable, concurrency=0),
        ValueError,
        r"flat_map\(\) needs concurrency to be an int >= 1, got 0",
    ),
    (
        lambda: ANY.flat_map(bt.from_iterable, concurrency=2.0),
        TypeError,
        r"flat_map\(\) needs concurrency to be an int, got float 2.0",
    ),
    (
        lambda: ANY.switch_map(None),
        TypeError,
        r"switch_map\(\) needs fn to be a function, got NoneType None",
    ),
    (
        lambda: ANY.scan("add", 0),
        TypeError,
        r"scan\(\) needs fn to be a function, got str 'add'",
    ),
    (
        lambda: ANY.distinct_until_changed(key=1),
        TypeError,
        r"distinct_until_changed\(\) needs key to be a function, got int 1",
    ),
    (
        lambda: ANY.distinct_until_changed(key=returns_stream),
        TypeError,
        r"distinct_until_changed\(\) needs key to be a plain \(not `async def`\) function, got "
        r"'returns_stream'; a key is computed without awaiting: pair each item with its key",
    ),
    (
        lambda: ANY.catch(returns_stream),
        TypeError,
        r"catch\(\) needs handler to be a plain \(not `async def`\) function",
    ),
    (
        lambda: ANY.retry(0),
        ValueError,
        r"retry\(\) needs attempts to be an int >= 1, got 0",
    ),
    (
        lambda: ANY.retry("3"),
        TypeError,
        r"retry\(\) needs attempts to be an int, got str '3'",
    ),
    (
        lambda: ANY.retry(2, backoff=-1),
        ValueError,
        r"retry\(\) needs backoff to be a finite number of seconds >= 0 or a function .*, got -1$",
    ),
    (
        lambda: ANY.retry(2, backoff="1s"),
        TypeError,
        r"retry\(\) needs backoff to be a number of seconds or a function .*, got str '1s'",
    ),
    (
        lambda: ANY.retry(2, on=trio.Cancelled),
        TypeError,
        r"retry\(\) needs on to be an Exception subclass .* got <class 'trio.Cancelled'>",
    ),
    (
        lambda: ANY.retry(2, on=KeyboardInterrupt),
        TypeError,
        r"never Cancelled, KeyboardInterrupt or SystemExit",
    ),
    (
        lambda: ANY.retry(2, on=()),
        ValueError,
        r"retry\(\) needs on to be at least one exception type",
    ),
    (
        lambda: ANY.debounce(0),
        ValueError,
        r"debounce\(\) needs seconds to be a finite number of seconds > 0, got 0$",
    ),
    (
        lambda: ANY.debounce(math.inf),
        ValueError,
        r"debounce\(\) needs seconds to be a finite number of seconds > 0, got inf",
    ),
    (
        lambda: ANY.throttle("1"),
        TypeError,
        r"throttle\(\) needs seconds to be a number of seconds, got str '1'",
    ),
    (
        lambda: ANY.throttle(1, keep="last"),
        ValueError,
        r"throttle\(\) needs keep to be one of 'latest', 'first', got 'last'",
    ),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD)
def test_bad_arguments_are_refused_when_the_stream_is_built(
    build: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()


def returns_none(_: Exception) -> None:
    return None


async def test_a_function_that_does_not_return_a_stream_is_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def not_a_stream(x: int) -> list[int]:
        return [x]

    with pytest.raises(
        TypeError,
        match=r"flat_map function .*not_a_stream must return a beluga_trio Stream, got list",
    ):
        await ANY.flat_map(not_a_stream).collect()
    with pytest.raises(
        TypeError, match=r"catch handler function .* must return a beluga_trio Stream"
    ):
        await (
            ScriptedProducer([1], raise_before=0)
            .stream()
            .catch(cast("Any", returns_none))
            .collect()
        )


def test_options_are_keyword_only() -> None:
    s: Any = bt.from_iterable([1])
    with pytest.raises(TypeError):
        s.flat_map(bt.from_iterable, 2)
    with pytest.raises(TypeError):
        s.retry(2, 1.0)
    with pytest.raises(TypeError):
        s.throttle(1, "first")


@pytest.mark.parametrize("name", ["flat_map", "catch", "retry"])
async def test_chunked_stages_over_endless_sync_sources_are_cancellable(name: str) -> None:
    # Many short inner streams (or one endless source) handed on in chunks: the stage still
    # takes a schedule point every few hundred items (a real clock: a virtual one never
    # advances while a task is busy).
    endless = bt.from_iterable(itertools.count())
    stream = {
        "flat_map": endless.flat_map(lambda x: bt.from_iterable([x])),
        "catch": endless.catch(lambda _: bt.from_iterable([0])),
        "retry": endless.retry(2),
    }[name]
    with trio.move_on_after(0.05) as cs:
        await stream.for_each(lambda _: None)
    assert cs.cancelled_caught


async def test_switch_map_inner_error_arrives_as_itself_and_stops_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("inner")
    outer = ScriptedProducer.counting(delay=1)

    def inner(x: int) -> bt.Stream[int]:
        return ScriptedProducer([x], raise_before=1, error=err, delay=0.1).stream()

    with no_leaks():
        got, error = await outer.stream().switch_map(inner).collect_result()
    assert got == [0]
    assert error is err
    assert outer.opened == outer.cleanups == 1


async def test_flat_map_concurrent_outer_error_comes_after_the_started_inner_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = ScriptedError("outer")
    outer = ScriptedProducer([0, 1], raise_before=2, error=err)

    def inner(x: int) -> bt.Stream[int]:
        return spaced(10 * x, 10 * x + 3, interval=1)

    got, error = await outer.stream().flat_map(inner, concurrency=3).collect_result()
    assert sorted(got) == [0, 1, 2, 10, 11, 12]
    assert error is err


# ------------------------------------------ regressions found by the adversary (issue 15)


def _stop_async(*_: object) -> Any:
    raise StopAsyncIteration


async def _stop_async_fold(acc: int, x: int) -> int:
    await trio.lowlevel.checkpoint()
    raise StopAsyncIteration


def _async_source() -> bt.Stream[int]:
    return spaced(0, 3)  # a producer: the stages over it are not fused


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _async_source().scan(_stop_async, 0), id="scan-sync-fn"),
        pytest.param(lambda: _async_source().scan(_stop_async_fold, 0), id="scan-async-fn"),
        pytest.param(
            lambda: _async_source().distinct_until_changed(key=_stop_async), id="distinct-key"
        ),
        pytest.param(lambda: _async_source().flat_map(_stop_async), id="flat_map"),
        pytest.param(lambda: _async_source().flat_map(_stop_async, concurrency=2), id="flat_map-2"),
        pytest.param(lambda: _async_source().switch_map(_stop_async), id="switch_map"),
        pytest.param(
            lambda: spaced(0, 1).map(_fail_with_scripted).catch(_stop_async), id="catch-handler"
        ),
    ],
)
async def test_a_user_functions_stop_async_iteration_does_not_end_the_stream(
    build: Callable[[], bt.Stream[Any]],
) -> None:
    """PEP 479: a StopAsyncIteration raised by a user's function would end the stream
    silently if it left a pull(); it fails the stream with a RuntimeError caused by it."""
    with no_leaks(), pytest.raises(RuntimeError, match="StopAsyncIteration") as info:
        await build().collect()
    assert type(info.value.__cause__) is StopAsyncIteration


def _fail_with_scripted(x: int) -> int:
    raise ScriptedError(f"item {x}")


async def test_chain_opens_its_first_stream_with_the_chain() -> None:
    """Found by the adversary: a chain left before its first request (here by take(0)) used
    to leave the channel of its first source, a from_channel stream, open."""
    send, receive = trio.open_memory_channel[int](1)
    send.send_nowait(1)
    send.close()
    with no_leaks():
        inner = bt.chain(bt.from_channel(receive), bt.from_iterable([2]))
        assert await bt.chain(inner.take(0), bt.from_iterable([3])).collect() == [3]
    assert receive.statistics().open_receive_channels == 0


@pytest.mark.parametrize("concurrency", [2, 3])
async def test_flat_map_concurrent_error_over_a_channel_arrives_alone(concurrency: int) -> None:
    """Found by the adversary: the first error (an inner stream's) stops the upstream, which
    closes a from_channel source while the feeder may be reading it; its ClosedResourceError
    is past the end of the stream and must not join the error."""

    @bt.stream
    async def inner(x: int) -> AsyncGenerator[int, None]:
        await trio.lowlevel.checkpoint()
        if x == 1:
            raise ScriptedError("inner 1")
        nothing: list[int] = []
        for y in nothing:  # an empty stream
            yield y

    for _ in range(50):  # the feeder is reading the channel at the stop only sometimes
        send, receive = trio.open_memory_channel[int](4)
        for x in range(4):
            send.send_nowait(x)
        send.close()
        with pytest.raises(ScriptedError, match="inner 1"), no_leaks():
            await bt.from_channel(receive).flat_map(inner, concurrency=concurrency).collect()
