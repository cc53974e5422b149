"""The peers' own scenarios for zip, chain, flat_map, switch_map, scan,
distinct_until_changed, catch, retry, debounce and throttle, re-expressed on trio's virtual
clock, where ``tests/test_ops.py`` does not already carry them.

Sources of the scenarios, in our words (no code was taken):

* aiostream (GPL-3.0): ``tests/test_combine.py`` (``test_chain``, ``test_zip``,
  ``test_zip_strict``), ``tests/test_advanced.py`` (``test_concatmap``, ``test_flatmap``,
  ``test_switchmap``), ``tests/test_aggregate.py`` (``test_accumulate``);
* Kotlin's coroutines guide, "Asynchronous Flow" (the ``zip``, ``flatMapConcat``,
  ``flatMapMerge``, ``flatMapLatest`` and exception-transparency examples, with their printed
  times) and the API pages of ``zip``, ``sample``, ``runningFold``, ``retry`` and ``catch``;
* RxPY's marble diagrams (the docstrings of ``reactivex.operators``): ``zip``, ``concat``,
  ``flat_map``, ``switch_latest``, ``scan``, ``distinct_until_changed``, ``catch``,
  ``debounce`` and ``sample``.

A marble tick is one second here. Where our behaviour differs from the peer's on purpose,
the test pins ours and says why; ``docs/peers.md`` lists the differences. The scenarios
already in ``tests/test_ops.py`` (aiostream's flatmap and switchmap timings, Kotlin's
``debounce``, ``sample`` and ``flatMapLatest`` examples, RxPY's ``throttle_first``) are
not repeated.
"""

# ruff: noqa: RUF100, RUF102
# flake8-async cannot know that a @bt.stream body runs in its own task:
# noqa: ASYNC119

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.testing import ScriptedError, ScriptedProducer, no_leaks

T = TypeVar("T")


def marble(events: Iterable[tuple[float, T]], *, end: float | None = None) -> bt.Stream[T]:
    """Each ``(at, item)`` at ``at`` seconds after the body starts (its first request), then
    the end at ``end`` (or right after the last item). Cold: each opening starts afresh."""
    schedule = list(events)

    @bt.stream
    async def produce() -> AsyncIterator[T]:
        t0 = trio.current_time()
        for at, item in schedule:
            await trio.sleep_until(t0 + at)
            yield item
        if end is not None:
            await trio.sleep_until(t0 + end)

    return produce()


def paced(items: Iterable[T], delay: float) -> bt.Stream[T]:
    """Kotlin's ``flowOf(...).onEach { delay(d) }``: each item ``delay`` seconds after it
    was asked for."""
    values = list(items)

    @bt.stream
    async def produce() -> AsyncIterator[T]:
        for item in values:
            await trio.sleep(delay)
            yield item

    return produce()


async def arrivals(stream: bt.Stream[T]) -> list[tuple[float, T]]:
    """Every item with the virtual time (from the opening) at which the consumer got it."""
    t0 = trio.current_time()
    got: list[tuple[float, T]] = []
    with no_leaks():
        async with stream.open() as items:
            async for item in items:
                got.append((round(trio.current_time() - t0, 6), item))  # noqa: PERF401
    return got


class Lifetimes:
    """When each named source was opened and when its cleanup ended (from ``t0``)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.log: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.log.append((round(trio.current_time() - self.t0, 6), what))

    def source(
        self, name: str, schedule: Iterable[tuple[float, T]], cleanup: float = 1.0
    ) -> bt.Stream[T]:
        """aiostream's ``range(...) | add_resource.pipe(cleanup)``: each ``(at, item)`` at
        ``at`` seconds after the opening, and a cleanup that awaits ``cleanup`` seconds,
        shielded (so that it runs in full even when the source is cancelled)."""
        events = list(schedule)

        @bt.stream
        async def produce() -> AsyncIterator[T]:
            self.note(f"open {name}")
            start = trio.current_time()
            try:
                for at, item in events:
                    await trio.sleep_until(start + at)
                    await trio.lowlevel.checkpoint()
                    yield item
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(cleanup)
                self.note(f"closed {name}")

        return produce()


def at_once(items: Iterable[T]) -> list[tuple[float, T]]:
    return [(0.0, item) for item in items]


# ------------------------------------------------------------------------------------ zip


async def test_zip_aiostream_three_copies_of_a_source_with_a_slow_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_zip: one source with a 1 s cleanup, zipped with itself three times
    (three openings of one cold stream): five triples, and every opening has finished its
    cleanup before the end is delivered."""
    life = Lifetimes()
    life.t0 = trio.current_time()
    xs = life.source("xs", at_once(range(5)))
    with no_leaks():
        async with bt.zip(xs, xs, xs).open() as triples:
            got = [t async for t in triples]
            closed_at_the_end = [what for _, what in life.log].count("closed xs")
    assert got == [(x, x, x) for x in range(5)]
    assert closed_at_the_end == 3


async def test_zip_aiostream_stops_at_once_when_the_first_source_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_zip, issue #118: a fast source (0, then a 1 s pause and its end) and a
    slow one (0, then a 2 s pause): one pair, and the slow source never gets past its
    pause: it is stopped as soon as the fast one has ended, at 1 s."""
    continued: list[str] = []

    @bt.stream
    async def fast() -> AsyncIterator[int]:
        yield 0
        await trio.sleep(1)

    @bt.stream
    async def slow() -> AsyncIterator[int]:
        yield 0
        await trio.sleep(2)
        continued.append("slow went on")  # pragma: no cover - stopped before

    start = trio.current_time()
    assert await arrivals(bt.zip(fast(), slow())) == [(0, (0, 0))]
    assert continued == []
    assert trio.current_time() - start == 1


async def test_zip_reads_in_argument_order_so_a_slow_first_source_delays_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same scenario with the slow source first. Pinned difference: ``bt.zip`` reads its
    sources one after another in the consumer's task (no task per source, which keeps it
    at hand-written speed), so it learns that the fast source has ended only once the slow
    one has given its item or ended: 2 s, not 1 s. aiostream (and Kotlin's ``zip``, RxPY's)
    read the sources concurrently."""
    continued: list[str] = []

    @bt.stream
    async def fast() -> AsyncIterator[int]:
        yield 0
        await trio.sleep(1)

    @bt.stream
    async def slow() -> AsyncIterator[int]:
        yield 0
        await trio.sleep(2)
        continued.append("slow went on")

    start = trio.current_time()
    assert await arrivals(bt.zip(slow(), fast())) == [(0, (0, 0))]
    assert continued == ["slow went on"]
    assert trio.current_time() - start == 2


async def test_zip_has_no_strict_mode_and_never_compares_items() -> None:
    """aiostream test_zip_strict (``strict=True``, issue #118), pinned difference: ``bt.zip``
    has no strict mode; sources of different lengths end with the shortest, without an
    error (the builtin ``zip``'s default). aiostream's items whose ``==`` raises show that
    zip never compares items: neither does ours."""

    class ThrowsInEquality:
        def __eq__(self, other: object) -> bool:
            raise AssertionError("zip compared two items")

        __hash__ = object.__hash__

    odd = ThrowsInEquality()
    with no_leaks():
        got = await bt.zip(bt.from_iterable([odd] * 3), bt.from_iterable([odd] * 2)).collect()
    assert len(got) == 2
    assert all(a is odd and b is odd for a, b in got)
    with no_leaks():
        assert await bt.zip(bt.from_iterable(range(2)), bt.from_iterable(range(2))).collect() == [
            (0, 0),
            (1, 1),
        ]


async def test_zip_kotlin_doc_example_and_the_longer_flow_is_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's ``zip`` API page: 1, 2, 3 each after 10 ms zipped with "a".."d" each after
    15 ms gives "1a 2b 3c"; the zip completes when the shorter flow completes and the other
    is cancelled: "d" is never produced."""
    letters = ScriptedProducer("abcd", delay=0.015)
    got = await arrivals(bt.zip(paced([1, 2, 3], 0.01), letters.stream()))
    assert [f"{n}{s}" for _, (n, s) in got] == ["1a", "2b", "3c"]
    assert letters.last.yielded == ["a", "b", "c"]
    letters.assert_cleaned_up()


async def test_zip_kotlin_guide_timing_sequential_and_with_a_buffer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's guide, "Zip": numbers every 300 ms zipped with strings every 400 ms print
    at 400, 800, 1200 ms, because Kotlin collects the other flow concurrently, as if through
    ``buffer(0)``. Pinned difference: ``bt.zip`` asks its lock-step sources one after
    another, so their waits add up (700, 1400, 2100 ms); ``.buffer(1)`` on a source has it
    read ahead in its own task, which gives Kotlin's timing (the documented way)."""
    nums, strs = [1, 2, 3], ["one", "two", "three"]
    expected = [f"{n} -> {s}" for n, s in zip(nums, strs, strict=True)]

    got = await arrivals(bt.zip(paced(nums, 0.3), paced(strs, 0.4)))
    assert [f"{n} -> {s}" for _, (n, s) in got] == expected
    assert [t for t, _ in got] == [0.7, 1.4, 2.1]

    got = await arrivals(bt.zip(paced(nums, 0.3), paced(strs, 0.4).buffer(1)))
    assert [f"{n} -> {s}" for _, (n, s) in got] == expected
    assert [t for t, _ in got] == [0.4, 0.8, 1.2]


async def test_zip_rxpy_marble_with_buffered_sources(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RxPY's zip marble: ``--1--2---3-----4---|`` and ``-a----b----c-d------|`` give the
    pairs (1,a) (2,b) (3,c) (4,d), each when the later of its two items has arrived. With
    each source read ahead by ``.buffer(1)`` (both start when the zip is opened, as Rx
    subscribes to both), the pairs arrive at Rx's times: 2, 6, 11, 15."""
    numbers = marble([(2, 1), (5, 2), (9, 3), (15, 4)], end=19)
    letters = marble([(1, "a"), (6, "b"), (11, "c"), (13, "d")], end=20)
    got = await arrivals(bt.zip(numbers.buffer(1), letters.buffer(1)))
    assert got == [(2, (1, "a")), (6, (2, "b")), (11, (3, "c")), (15, (4, "d"))]


# ---------------------------------------------------------------------------------- chain


async def test_chain_aiostream_sources_with_a_slow_cleanup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_chain, second case: two sources, each with a 1 s cleanup, chained:
    10..19 in order; the second is opened only once the first's cleanup has finished (at
    1 s), and the chain ends once the second's has (at 2 s)."""
    life = Lifetimes()
    life.t0 = trio.current_time()
    got = await arrivals(
        bt.chain(life.source("a", at_once(range(10, 15))), life.source("b", at_once(range(15, 20))))
    )
    assert got == [(0, x) for x in range(10, 15)] + [(1, x) for x in range(15, 20)]
    assert life.log == [(0, "open a"), (1, "closed a"), (1, "open b"), (2, "closed b")]
    assert trio.current_time() - life.t0 == 2


class SlowToClose(trio.abc.ReceiveChannel[int]):
    """A channel whose ``aclose`` takes a second: a resource that a stream releases only when
    its opening closes (``from_channel`` closes the channel it was given)."""

    def __init__(self, items: Iterable[int]) -> None:
        self.items = list(items)
        self.closed = False

    async def receive(self) -> int:
        await trio.lowlevel.checkpoint()
        if not self.items:
            raise trio.EndOfChannel
        return self.items.pop(0)

    async def aclose(self) -> None:
        await trio.sleep(1)
        self.closed = True


async def test_chain_closes_the_source_before_opening_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_chain's ``assert_cleanup``, with a first source whose resource is
    released only when its opening closes (a channel that takes a second to close) and a
    next source that starts reading as soon as it is opened (``.buffer(1)``): the channel
    has been closed before the next source is opened."""
    channel = SlowToClose([1, 2])
    seen: list[bool] = []

    @bt.stream
    async def then() -> AsyncIterator[int]:
        seen.append(channel.closed)
        await trio.lowlevel.checkpoint()
        yield 3

    with no_leaks():
        got = await bt.chain(bt.from_channel(channel), then().buffer(1)).collect()
    assert got == [1, 2, 3]
    assert seen == [True]


async def test_chain_rxpy_concat_marble(autojump_clock: trio.testing.MockClock) -> None:
    """RxPY's concat marble: ``---1--2--3--|`` then ``--6--8--|`` gives
    ``---1--2--3----6--8-|``: the second stream starts only when the first has ended (at
    12), so its items come 2 and 5 ticks later."""
    first = marble([(3, 1), (6, 2), (9, 3)], end=12)
    second = marble([(2, 6), (5, 8)], end=8)
    start = trio.current_time()
    assert await arrivals(bt.chain(first, second)) == [(3, 1), (6, 2), (9, 3), (14, 6), (17, 8)]
    assert trio.current_time() - start == 20


# ------------------------------------------------------------------------------- flat_map


def request_flow(i: int) -> bt.Stream[str]:
    """Kotlin's guide ``requestFlow``: "i: First", 500 ms, "i: Second"."""
    return marble([(0, f"{i}: First"), (0.5, f"{i}: Second")])


async def test_flat_map_kotlin_flat_map_concat(autojump_clock: trio.testing.MockClock) -> None:
    """Kotlin's guide, ``flatMapConcat``: numbers every 100 ms, each mapped to
    ``requestFlow``; the next number is asked for only when the inner flow has completed:
    First/Second at 100/600, 700/1200, 1300/1800 ms."""
    got = await arrivals(paced([1, 2, 3], 0.1).flat_map(request_flow))
    assert got == [
        (0.1, "1: First"),
        (0.6, "1: Second"),
        (0.7, "2: First"),
        (1.2, "2: Second"),
        (1.3, "3: First"),
        (1.8, "3: Second"),
    ]


async def test_flat_map_kotlin_flat_map_merge(autojump_clock: trio.testing.MockClock) -> None:
    """Kotlin's guide, ``flatMapMerge`` (concurrency 16 by default): the inner flows run at
    once, so the Firsts come at 100, 200, 300 ms and the Seconds at 600, 700, 800 ms."""
    got = await arrivals(paced([1, 2, 3], 0.1).flat_map(request_flow, concurrency=16))
    assert got == [
        (0.1, "1: First"),
        (0.2, "2: First"),
        (0.3, "3: First"),
        (0.6, "1: Second"),
        (0.7, "2: Second"),
        (0.8, "3: Second"),
    ]


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_flat_map_rxpy_marble(
    autojump_clock: trio.testing.MockClock, concurrency: int
) -> None:
    """RxPY's flat_map marble: ``--1-2-3-|`` mapped to ``range(0, x)`` gives 0, 0 1, 0 1 2,
    each inner stream's items when its item arrives."""
    outer = marble([(2, 1), (4, 2), (6, 3)], end=8)
    got = await arrivals(
        outer.flat_map(lambda x: bt.from_iterable(range(x)), concurrency=concurrency)
    )
    assert got == [(2, 0), (4, 0), (4, 1), (6, 0), (6, 1), (6, 2)]


async def test_flat_map_aiostream_concatmap_delivers_each_item_as_soon_as_it_exists(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_concatmap, "as soon as possible": one item, 2, mapped to 2..5 one a
    second, under a 2 s limit between items: no timeout, the items arrive 1 s apart."""
    got = await arrivals(
        bt.from_iterable([2])
        .flat_map(lambda x: marble([(i, x + i) for i in range(4)]))
        .timeout(between=2)
    )
    assert got == [(0, 2), (1, 3), (2, 4), (3, 5)]


async def test_flat_map_aiostream_concatmap_error_after_the_taken_items_is_never_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_concatmap, last case: the first item maps to 0, 1, 2 one a second, the
    second to an immediate error; taking three items gives 0, 1, 2 and no error: in order,
    the failing inner stream is never opened."""
    opened: list[bool] = []

    def inner(ok: bool) -> bt.Stream[int]:
        opened.append(ok)
        if ok:
            return marble([(0, 0), (1, 1), (2, 2)])
        return ScriptedProducer([0], raise_before=0, error=ZeroDivisionError).stream()

    got = await arrivals(bt.from_iterable([True, False]).flat_map(inner).take(3))
    assert got == [(0, 0), (1, 1), (2, 2)]
    assert opened == [True]


async def test_flat_map_concurrent_is_aiostreams_flatmap_not_its_concatmap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_concatmap, "concurrent run": concatmap runs the inner streams at once
    but delivers them in order (0 1 2 3 4 5). Pinned difference: ``flat_map(concurrency=n)``
    is aiostream's ``flatmap`` (arrival order: 0 2 4 1 3 5); an ordered flat_map is
    ``concurrency=1``, which runs one inner stream at a time."""

    def inner(x: int) -> bt.Stream[int]:
        return marble([(0, x), (5, x + 1)])

    outer = marble([(0, 0), (1, 2), (2, 4)])
    got = await arrivals(outer.flat_map(inner, concurrency=3))
    assert [x for _, x in got] == [0, 2, 4, 1, 3, 5]


# ----------------------------------------------------------------------------- switch_map


async def test_switch_map_kotlin_flat_map_latest_guide(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's guide, ``flatMapLatest``: numbers every 100 ms mapped to ``requestFlow``;
    each number cancels the reply of the one before: the three Firsts at 100, 200, 300 ms
    and only the last Second, at 800 ms, after the outer flow has ended (the last inner
    stream runs to its end)."""
    got = await arrivals(paced([1, 2, 3], 0.1).switch_map(request_flow))
    assert got == [(0.1, "1: First"), (0.2, "2: First"), (0.3, "3: First"), (0.8, "3: Second")]


async def test_switch_map_rxpy_switch_latest_marble(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RxPY's switch_latest marble: an inner stream at tick 1 (``+--1--2--3--4--|``) and one
    at tick 8 (``+--a--b--c-|``) give ``----1--2---a--b--c-|``: 1 and 2 of the first, then
    the second replaces it before its 3."""
    inners = {
        "digits": marble([(3, 1), (6, 2), (9, 3), (12, 4)], end=15),
        "letters": marble([(3, "a"), (6, "b"), (9, "c")], end=11),
    }
    outer = marble([(1, "digits"), (8, "letters")], end=10)
    got = await arrivals(outer.switch_map(inners.__getitem__))
    assert got == [(4, 1), (7, 2), (11, "a"), (14, "b"), (17, "c")]


async def test_switch_map_aiostream_cleanup_procedure_with_slow_cleanups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """aiostream test_switchmap, "cleanup procedure": outer items 0, 1, 2... one a second,
    each mapped to x at once and x + 1 two seconds later, three items taken: 0, 1, 2. Here
    each inner stream's cleanup also awaits (shielded) 0.5 s, as aiostream's
    ``add_resource`` does: a new outer item waits until the inner stream it switches away
    from has finished its cleanup, so inner x + 1 starts 0.5 s after x arrives, and never
    while x is still cleaning up; taking three items stops the last one too."""
    life = Lifetimes()
    life.t0 = trio.current_time()

    def inner(x: int) -> bt.Stream[int]:
        return life.source(f"inner {x}", [(0, x), (2, x + 1)], cleanup=0.5)

    got = await arrivals(marble([(i, i) for i in range(5)]).switch_map(inner).take(3))
    assert [x for _, x in got] == [0, 1, 2]
    assert life.log == [
        (0, "open inner 0"),
        (1.5, "closed inner 0"),
        (1.5, "open inner 1"),
        (2.5, "closed inner 1"),
        (2.5, "open inner 2"),
        (3, "closed inner 2"),
    ]


async def test_switch_map_drops_the_item_in_hand_over_at_a_switch_where_kotlin_buffers_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A slow consumer: it takes "a0" and is busy for 2 s; inner stream "a" would have
    "a1" at 1 s, and the outer stream switches to "b" at 1.5 s. Pinned difference: Kotlin's
    ``flatMapLatest`` runs its inner flows into a buffer (64 items by default) and Rx pushes
    them, so there "a1" still reaches the consumer after the switch. ``switch_map`` hands an
    item over only to a consumer that takes it and reads the inner stream only while its
    consumer asks (as every stage does), so "a1" is never delivered, and "b" starts when
    the consumer comes back, at 2 s: b0, b1, b2 at 2, 3, 4 s."""

    def inner(v: str) -> bt.Stream[str]:
        return marble([(0, f"{v}0"), (1, f"{v}1"), (2, f"{v}2")])

    got: list[tuple[float, str]] = []
    start = trio.current_time()
    with no_leaks():
        async with marble([(0, "a"), (1.5, "b")]).switch_map(inner).open() as items:
            async for item in items:
                got.append((trio.current_time() - start, item))
                if item == "a0":
                    await trio.sleep(2)
    assert got == [(0, "a0"), (2, "b0"), (3, "b1"), (4, "b2")]


# ----------------------------------------------------------------------------------- scan


async def test_scan_aiostream_accumulate_with_and_without_an_initial_value() -> None:
    """aiostream test_accumulate: ``accumulate(mul, initializer=2)`` over 2, 3 is 2, 4, 12:
    ``scan(mul, 2)`` gives the same. Pinned difference: ``accumulate()`` without an
    initializer starts with the first item (0, 1, 3, 6, 10 over range(5), and nothing over
    an empty source); ``scan`` always takes ``initial`` and delivers it first (Kotlin's
    ``runningFold``), so an empty source gives ``[initial]``."""
    with no_leaks():
        assert await bt.from_iterable([2, 3]).scan(operator.mul, 2).collect() == [2, 4, 12]
        assert await bt.from_iterable(range(5)).scan(operator.add, 0).collect() == [
            0,
            0,
            1,
            3,
            6,
            10,
        ]
        empty: list[int] = []
        assert await bt.from_iterable(empty).scan(operator.add, 0).collect() == [0]


async def test_scan_kotlin_running_fold() -> None:
    """Kotlin's ``runningFold`` page: 1, 2, 3 folded into a list from ``emptyList()`` gives
    [], [1], [1, 2], [1, 2, 3]; each accumulator is a new list."""

    def append(acc: list[int], x: int) -> list[int]:
        return [*acc, x]

    start: list[int] = []
    with no_leaks():
        got = await bt.from_iterable([1, 2, 3]).scan(append, start).collect()
    assert got == [[], [1], [1, 2], [1, 2, 3]]


async def test_scan_rxpy_marble(autojump_clock: trio.testing.MockClock) -> None:
    """RxPY's scan marble: ``----1--2--3--4-----|`` gives ``----1--3--6--10----|``, each sum
    when its item arrives. Pinned difference: Rx's ``scan`` (with a seed or without) never
    emits the seed; ``scan`` delivers ``initial`` first, at once, so ``.skip(1)`` is Rx's."""
    source = marble([(4, 1), (7, 2), (10, 3), (13, 4)], end=19)
    assert await arrivals(source.scan(operator.add, 0)) == [
        (0, 0),
        (4, 1),
        (7, 3),
        (10, 6),
        (13, 10),
    ]
    assert await arrivals(source.scan(operator.add, 0).skip(1)) == [
        (4, 1),
        (7, 3),
        (10, 6),
        (13, 10),
    ]


# ---------------------------------------------------------------- distinct_until_changed


async def test_distinct_until_changed_rxpy_marble(autojump_clock: trio.testing.MockClock) -> None:
    """RxPY's distinct_until_changed marble: ``-0-1-1-2-3-1-2-2-3-|`` gives
    ``-0-1---2-3-1-2---3-|``: a repeat of the item just before is dropped, a value seen
    earlier is not."""
    values = [0, 1, 1, 2, 3, 1, 2, 2, 3]
    source = marble([(1 + 2 * i, x) for i, x in enumerate(values)], end=19)
    assert await arrivals(source.distinct_until_changed()) == [
        (1, 0),
        (3, 1),
        (7, 2),
        (9, 3),
        (11, 1),
        (13, 2),
        (17, 3),
    ]


async def test_distinct_until_changed_by_key_compares_with_the_last_delivered() -> None:
    """RxPY's ``distinct_until_changed(key_mapper)`` and Kotlin's
    ``distinctUntilChangedBy``: items are compared by their key, with the key of the last
    item delivered."""
    records = [("a", 1), ("a", 2), ("b", 3), ("b", 4), ("a", 5)]
    with no_leaks():
        got = await bt.from_iterable(records).distinct_until_changed(key=lambda r: r[0]).collect()
    assert got == [("a", 1), ("b", 3), ("a", 5)]


# ---------------------------------------------------------------------------------- catch


async def test_catch_rxpy_marble(autojump_clock: trio.testing.MockClock) -> None:
    """RxPY's catch marble: ``---1---2---3-*`` with the fallback ``-7-8-|`` gives
    ``---1---2---3---7-8-|``: the fallback is subscribed when the error happens (13), so
    its items come 2 and 4 ticks later."""

    @bt.stream
    async def fails() -> AsyncIterator[int]:
        t0 = trio.current_time()
        for at, x in [(3, 1), (7, 2), (11, 3)]:
            await trio.sleep_until(t0 + at)
            yield x
        await trio.sleep_until(t0 + 13)
        raise ScriptedError("at 13")

    errors: list[Exception] = []

    def fallback(error: Exception) -> bt.Stream[int]:
        errors.append(error)
        return marble([(2, 7), (4, 8)], end=6)

    start = trio.current_time()
    got = await arrivals(fails().catch(fallback))
    assert got == [(3, 1), (7, 2), (11, 3), (15, 7), (17, 8)]
    assert trio.current_time() - start == 19
    assert [str(e) for e in errors] == ["at 13"]


async def test_catch_kotlin_guide_upstream_error_stops_the_upstream() -> None:
    """Kotlin's guide, "Catching declaratively": a flow emitting 1, 2, 3, mapped with a
    check that fails on 2, caught by a handler that emits one more item: "string 1", then
    the handler's item; the source is stopped at the failure (3 is never emitted)."""
    emitted: list[int] = []

    @bt.stream
    async def simple() -> AsyncIterator[int]:
        for i in range(1, 4):
            emitted.append(i)
            await trio.lowlevel.checkpoint()
            yield i

    def check(value: int) -> str:
        if value > 1:
            raise RuntimeError(f"Crashed on {value}")
        return f"string {value}"

    def handler(error: Exception) -> bt.Stream[str]:
        return bt.from_iterable([f"Caught {error!r}"])

    with no_leaks():
        got = await simple().map(check).catch(handler).collect()
    assert got == ["string 1", "Caught RuntimeError('Crashed on 2')"]
    assert emitted == [1, 2]


async def test_catch_is_transparent_to_errors_downstream_of_it() -> None:
    """Kotlin's "exception transparency" (the ``catch`` and ``retry`` pages): an error
    raised after the catch (a later stage, or the consumer's own loop body) never reaches
    its handler; it comes out as itself."""
    handled: list[Exception] = []

    def handler(error: Exception) -> bt.Stream[int]:
        handled.append(error)  # pragma: no cover - must not be called
        return bt.from_iterable([0])  # pragma: no cover

    def check(value: int) -> int:
        if value > 1:
            raise ValueError(f"collected {value}")
        return value

    later = ValueError("later stage")
    with no_leaks(), pytest.raises(ValueError, match="collected 2"):
        await bt.from_iterable([1, 2, 3]).catch(handler).map(check).collect()
    with no_leaks(), pytest.raises(ValueError, match="later stage") as caught:  # noqa: PT012
        async with bt.from_iterable([1, 2, 3]).catch(handler).open() as items:
            async for _ in items:
                raise later
    assert caught.value is later
    assert handled == []


# ---------------------------------------------------------------------------------- retry


async def test_retry_never_repeats_a_prefix_where_kotlin_and_rx_do(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's ``retry(2)`` over 1..5 failing at 3 collects 1 2, 1 2, 1 2 and then the
    error (RxPY's ``retry`` re-subscribes the same way). Pinned difference (issue 15, the
    ``retry`` docs): the first item reached the consumer, so the error passes through; the
    prefix is never delivered twice and the source is opened once."""
    source = ScriptedProducer([1, 2, 3, 4, 5], raise_before=2, error=RuntimeError)
    with no_leaks():
        items, error = await source.stream().retry(3).collect_result()
    assert items == [1, 2]
    assert isinstance(error, RuntimeError)
    assert source.opened == 1


async def test_retry_kotlin_predicate_with_a_delay(autojump_clock: trio.testing.MockClock) -> None:
    """Kotlin's ``retry(3) { e -> (e is IOException).also { if (it) delay(1000) } }``: an
    I/O error is retried up to three times, one second apart, and then raised; another
    error is raised at once. Ours: ``retry(4, backoff=1, on=OSError)`` (``attempts`` counts
    the first one)."""
    opened_at: list[float] = []
    start = trio.current_time()

    @bt.stream
    async def unreliable() -> AsyncIterator[int]:  # noqa: ASYNC124 - an async generator on purpose
        opened_at.append(trio.current_time() - start)
        raise OSError("I/O")
        yield 0  # pragma: no cover

    with no_leaks(), pytest.raises(OSError, match="I/O"):
        await unreliable().retry(4, backoff=1, on=OSError).collect()
    assert opened_at == [0, 1, 2, 3]

    other = ScriptedProducer([0], raise_before=0, error=KeyError)
    with no_leaks(), pytest.raises(KeyError):
        await other.stream().retry(4, backoff=1, on=OSError).collect()
    assert other.opened == 1


@pytest.mark.parametrize(("cleanup", "second_at"), [(1.0, 2.0), (4.0, 4.0)])
async def test_retry_backoff_runs_from_the_error_and_the_cleanup_counts_towards_it(
    autojump_clock: trio.testing.MockClock, cleanup: float, second_at: float
) -> None:
    """Kotlin's ``retryWhen { ...; delay(1000); true }`` waits after the failed collection
    has ended. Ours: the failed attempt is stopped first (here its producer's cleanup takes
    1 s, after a later stage of the attempt failed at 0 s), and the next attempt starts
    ``backoff`` (2 s) after the error arrived: at 2 s, not 3 s. A cleanup longer than the
    backoff delays it (4 s of cleanup: the next attempt starts at 4 s)."""
    opened_at: list[float] = []
    start = trio.current_time()

    @bt.stream
    async def attempt() -> AsyncIterator[int]:
        opened_at.append(trio.current_time() - start)
        try:
            yield len(opened_at)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(cleanup)

    def fails_first(x: int) -> int:
        if x == 1:
            raise OSError("the first attempt's item is bad")
        return x

    with no_leaks():
        got = await attempt().map(fails_first).retry(2, backoff=2).take(1).collect()
    assert got == [2]
    assert opened_at == [0.0, second_at]


# ------------------------------------------------------------------------------- debounce


async def test_debounce_rxpy_marble(autojump_clock: trio.testing.MockClock) -> None:
    """RxPY's debounce marble: ``--1--2-3-4--5------|`` gives ``----1------4---5---|``
    (here with a 2.5-tick window, so that no item and deadline fall on the same tick): an
    item is delivered once the window has passed without a newer one."""
    source = marble([(2, 1), (5, 2), (7, 3), (9, 4), (12, 5)], end=19)
    start = trio.current_time()
    assert await arrivals(source.debounce(2.5)) == [(4.5, 1), (11.5, 4), (14.5, 5)]
    assert trio.current_time() - start == 19


async def test_debounce_delivers_the_pending_item_when_the_source_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's and Rx's debounce: when the source ends while an item waits out its window,
    the item is delivered at once, at the end (not dropped, not delayed by the window)."""
    source = marble([(0, "a"), (0.5, "b")], end=0.7)
    assert await arrivals(source.debounce(1)) == [(0.7, "b")]


def debounced(s: bt.Stream[str]) -> bt.Stream[str]:
    return s.debounce(1)


def throttled(s: bt.Stream[str]) -> bt.Stream[str]:
    return s.throttle(1)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param(debounced, [(0.5, "b")], id="debounce"),
        pytest.param(throttled, [(0, "a"), (1, "b")], id="throttle"),
    ],
)
async def test_rate_limit_delivers_the_held_item_before_an_error_where_peers_drop_it(
    autojump_clock: trio.testing.MockClock,
    rate: Callable[[bt.Stream[str]], bt.Stream[str]],
    expected: list[tuple[float, str]],
) -> None:
    """A source fails (at 0.5 s) while an item is held back ("b", at 0.2 s). Kotlin's
    ``debounce``/``sample`` and Rx's ``debounce``/``sample`` forward the error at once and the
    held item is lost. Pinned difference: nothing is lost silently; the held item is
    delivered first (``debounce``: at once; ``throttle``: when its period ends), then the
    error, as itself."""
    error = ScriptedError("source failed")

    @bt.stream
    async def fails() -> AsyncIterator[str]:
        yield "a"
        await trio.sleep(0.2)
        yield "b"
        await trio.sleep(0.3)
        raise error

    got: list[tuple[float, str]] = []
    start = trio.current_time()
    with no_leaks(), pytest.raises(ScriptedError) as caught:  # noqa: PT012
        async with rate(fails()).open() as items:
            async for item in items:
                got.append((trio.current_time() - start, item))  # noqa: PERF401
    assert caught.value is error
    assert got == expected


# ------------------------------------------------------------------------------- throttle


async def test_throttle_latest_and_rxpy_sample_marble(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RxPY's sample marble: ``---1-2-3-4------|`` sampled every 4 ticks gives
    ``----1---3---4---|`` (the latest item at each tick of a clock started at the
    subscription). Pinned difference: ``throttle(4)`` (``keep="latest"``) has no clock of
    its own: the first item goes through at once and starts a period, and the latest item
    of the period is delivered when it ends: 1 at 3, 3 at 7, 4 at 11, the same items (here
    with 3 half a tick earlier, so that no item and period end fall on the same tick)."""
    source = marble([(3, 1), (5, 2), (6.5, 3), (9, 4)], end=16)
    assert await arrivals(source.throttle(4)) == [(3, 1), (7, 3), (11, 4)]


async def test_throttle_latest_delivers_the_held_item_where_kotlin_sample_drops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kotlin's ``sample`` page: "the latest element is not emitted if it does not fit into
    the sampling window". Pinned difference: ``throttle`` keeps it and delivers it when its
    period ends, so a progress bar's last update (its 100 %) is never lost; the stream then
    ends."""
    source = marble([(0, 10), (0.05, 50), (0.1, 100)], end=0.12)
    start = trio.current_time()
    assert await arrivals(source.throttle(0.2)) == [(0, 10), (0.2, 100)]
    assert trio.current_time() - start == pytest.approx(0.2)


async def test_throttle_first_rxpy_marble_ignores_the_rest_of_each_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RxPY's ``throttle_first``: the first item of each window goes through at once and
    the others of its window are dropped, even the last item of the stream."""
    source = marble([(0, "a"), (0.5, "b"), (0.9, "c"), (1.2, "d"), (1.5, "e")], end=3)
    assert await arrivals(source.throttle(1, keep="first")) == [(0, "a"), (1.2, "d")]


# ------------------------------------------------ a peer scenario stopped half-way through

PEER_PIPELINES: dict[str, Callable[[], bt.Stream[object]]] = {
    "zip": lambda: bt.zip(paced([1, 2, 3], 0.3), paced(["a", "b", "c"], 0.4)),
    "chain": lambda: bt.chain(marble([(3, 1), (6, 2)], end=7), marble([(2, 6)], end=3)),
    "flat_map": lambda: paced([1, 2, 3], 0.1).flat_map(request_flow),
    "flat_map-16": lambda: paced([1, 2, 3], 0.1).flat_map(request_flow, concurrency=16),
    "switch_map": lambda: paced([1, 2, 3], 0.1).switch_map(request_flow),
    "debounce": lambda: marble([(2, 1), (5, 2), (7, 3), (9, 4), (12, 5)]).debounce(2.5),
    "throttle": lambda: marble([(3, 1), (5, 2), (6.5, 3), (9, 4)]).throttle(4),
}


@pytest.mark.parametrize("name", sorted(PEER_PIPELINES))
async def test_peer_scenario_left_after_its_first_item_stops_everything(
    autojump_clock: trio.testing.MockClock, name: str
) -> None:
    """Each timed peer scenario, left by its consumer after the first item: nothing is left
    running and leaving takes no virtual time (nothing waits out a pause)."""
    with no_leaks():
        async with PEER_PIPELINES[name]().open() as items:
            await anext(items)
            left_at = trio.current_time()
    assert trio.current_time() == left_at
