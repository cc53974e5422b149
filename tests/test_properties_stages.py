"""Properties (hypothesis) of the stages, with random data and random early exits.

* map / filter / take / skip, chained at random, agree with the same list operations;
* merge delivers the multiset union of its sources and keeps each source's order;
* every fan_out view equals the source (a consumer that returns early saw a prefix);
* a buffer of any capacity with overflow="wait" is the identity;
* an ordered concurrent map equals the sequential map, whatever the concurrency and delays.

Every example runs in its own ``trio.run`` on a virtual clock and ends in one of four ways,
drawn at random: read to the end, ``break`` after m items, the consumer's scope cancelled
after m items, or the consumer raising after m items. Whatever the way: the items delivered
are exactly the first ones expected (per source, for a merge), an error raised by the consumer
arrives as itself, a cancellation is caught by the scope that was cancelled (the code after
the loop does not run), every producer ran its cleanup, and no task or async generator is left
(``no_leaks``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, NamedTuple, TypeVar

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, assert_prefix, no_leaks

T = TypeVar("T")

EXAMPLES = settings(deadline=None, max_examples=200)


class ConsumerError(Exception):
    pass


class Exit(NamedTuple):
    """How the consumer leaves: ``"end"`` (reads everything) or after ``after`` items."""

    how: Literal["end", "break", "cancel", "raise"]
    after: int


exits = st.builds(
    Exit,
    st.sampled_from(["end", "break", "cancel", "raise"]),
    st.integers(min_value=0, max_value=25),
)


async def consume(stream: bt.Stream[T], leave: Exit) -> list[T]:
    """Read ``stream`` and leave it as ``leave`` says; check how the leaving went."""
    got: list[T] = []
    reached_end = False
    error = ConsumerError("the consumer's own")
    caught: ConsumerError | None = None
    with trio.CancelScope() as scope:
        try:
            async with stream.open() as items:
                if leave.how == "end" or leave.after > 0:
                    async for x in items:
                        got.append(x)
                        if leave.how != "end" and len(got) >= leave.after:
                            if leave.how == "break":
                                break
                            if leave.how == "raise":
                                raise error
                            scope.cancel()  # the next anext raises Cancelled
                    else:
                        reached_end = True
                elif leave.how == "cancel":
                    scope.cancel()
                    await anext(items)
                elif leave.how == "raise":
                    raise error
        except ConsumerError as raised:
            caught = raised
    if leave.how == "raise" and (leave.after == 0 or len(got) == leave.after):
        assert caught is error, "the consumer's error did not arrive as itself"
    else:
        assert caught is None
    if scope.cancelled_caught:
        assert leave.how == "cancel"
        assert not reached_end, "a cancelled stream looked finished"
    if leave.how != "end" and not reached_end:
        assert len(got) == leave.after
    return got


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def checked() -> None:
        with trio.fail_after(100_000), no_leaks():  # virtual seconds: a hang fails at once
            await main()

    trio.run(checked, clock=trio.testing.MockClock(autojump_threshold=0))


def source(kind: str, xs: Sequence[int], fakes: list[ScriptedProducer[int]]) -> bt.Stream[int]:
    if kind == "list":
        return bt.from_iterable(list(xs))
    fake = ScriptedProducer(xs)
    fakes.append(fake)
    return fake.stream()


source_kinds = st.sampled_from(["list", "producer"])
ints = st.lists(st.integers(min_value=-20, max_value=20), max_size=25)


def check_cleaned_up(fakes: list[ScriptedProducer[int]]) -> None:
    for fake in fakes:
        fake.assert_cleaned_up()
        fake.assert_lock_step()


# -------------------------------------------------------------- map / filter / take / skip


async def _inc(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + 1


async def _odd(x: int) -> bool:
    await trio.lowlevel.checkpoint()
    return x % 2 != 0


class Op(NamedTuple):
    name: str
    on_stream: Callable[[bt.Stream[int]], bt.Stream[int]]
    on_list: Callable[[list[int]], list[int]]


def _make_op(
    name: str,
    on_stream: Callable[[bt.Stream[int]], bt.Stream[int]],
    on_list: Callable[[list[int]], list[int]],
) -> Op:
    return Op(name, on_stream, on_list)


def _op(
    name: str,
    on_stream: Callable[[bt.Stream[int]], bt.Stream[int]],
    on_list: Callable[[list[int]], list[int]],
) -> st.SearchStrategy[Op]:
    return st.just(_make_op(name, on_stream, on_list))


def _take(n: int) -> Op:
    return _make_op(f"take({n})", lambda s: s.take(n), lambda xs: xs[:n])


def _skip(n: int) -> Op:
    return _make_op(f"skip({n})", lambda s: s.skip(n), lambda xs: xs[n:])


def _ops() -> st.SearchStrategy[Op]:
    counts = st.integers(min_value=0, max_value=8)
    return st.one_of(
        _op("map(x*3)", lambda s: s.map(lambda x: x * 3), lambda xs: [x * 3 for x in xs]),
        _op("map(async x+1)", lambda s: s.map(_inc), lambda xs: [x + 1 for x in xs]),
        _op(
            "filter(x>0)", lambda s: s.filter(lambda x: x > 0), lambda xs: [x for x in xs if x > 0]
        ),
        _op("filter(async odd)", lambda s: s.filter(_odd), lambda xs: [x for x in xs if x % 2]),
        counts.map(_take),
        counts.map(_skip),
    )


@EXAMPLES
@given(
    xs=ints,
    kind=source_kinds,
    ops=st.lists(_ops(), max_size=5),
    leave=exits,
)
def test_map_filter_take_skip_agree_with_list_operations(
    xs: list[int], kind: str, ops: list[Op], leave: Exit
) -> None:
    expected = list(xs)
    for op in ops:
        expected = op.on_list(expected)

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        stream = source(kind, xs, fakes)
        for op in ops:
            stream = op.on_stream(stream)
        got = await consume(stream, leave)
        assert_prefix(got, expected)
        if leave.how == "end":
            assert got == expected
        check_cleaned_up(fakes)

    run(main)


# -------------------------------------------------------------------------------- merge


@EXAMPLES
@given(
    sources=st.lists(st.lists(st.integers(0, 99), max_size=10), min_size=1, max_size=4),
    kinds=st.lists(source_kinds, min_size=4, max_size=4),
    capacity=st.integers(min_value=1, max_value=4),
    leave=exits,
)
def test_merge_is_the_multiset_union_and_keeps_each_sources_order(
    sources: list[list[int]], kinds: list[str], capacity: int, leave: Exit
) -> None:
    # Item x of source i is tagged 1000 * i + x, so that its source can be told.
    tagged = [[1000 * i + x for x in xs] for i, xs in enumerate(sources)]

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        streams = [source(kind, xs, fakes) for kind, xs in zip(kinds, tagged, strict=False)]
        got = await consume(bt.merge(*streams, capacity=capacity), leave)
        for i, xs in enumerate(tagged):
            assert_prefix([x for x in got if x // 1000 == i], xs)
        if leave.how == "end":
            assert Counter(got) == Counter(x for xs in tagged for x in xs)
        check_cleaned_up(fakes)

    run(main)


# ------------------------------------------------------------------------------ fan_out


@EXAMPLES
@given(
    xs=ints,
    kind=source_kinds,
    stops=st.lists(st.one_of(st.none(), st.integers(0, 10)), min_size=1, max_size=3),
    buffer=st.integers(min_value=1, max_value=4),
)
def test_every_fan_out_view_equals_the_source(
    xs: list[int], kind: str, stops: list[int | None], buffer: int
) -> None:
    """Consumers with ``stop=None`` read their view to the end; the others return after that
    many items (an early return detaches them, the others go on)."""

    def consumer(stop: int | None) -> Callable[[bt.Stream[int]], Awaitable[list[int]]]:
        async def read(view: bt.Stream[int]) -> list[int]:
            seen: list[int] = []
            async with view.open() as items:
                async for x in items:
                    if stop is not None and len(seen) >= stop:
                        break
                    seen.append(x)
            return seen

        return read

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        views = await bt.fan_out(
            source(kind, xs, fakes), *(consumer(stop) for stop in stops), capacity=buffer
        )
        for stop, seen in zip(stops, views, strict=True):
            assert seen == (xs if stop is None else xs[:stop])
        check_cleaned_up(fakes)

    run(main)


# ------------------------------------------------------------------------------- buffer


@EXAMPLES
@given(
    xs=ints,
    kind=source_kinds,
    capacity=st.integers(min_value=1, max_value=30),
    consumer_delay=st.sampled_from([0.0, 0.5]),
    leave=exits,
)
def test_a_wait_buffer_of_any_capacity_is_the_identity(
    xs: list[int], kind: str, capacity: int, consumer_delay: float, leave: Exit
) -> None:
    async def slow(x: int) -> int:
        await trio.sleep(consumer_delay)
        return x

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        stream = source(kind, xs, fakes).buffer(capacity, overflow="wait")
        if consumer_delay:
            stream = stream.map(slow)
        got = await consume(stream, leave)
        assert_prefix(got, xs)
        if leave.how == "end":
            assert got == xs
        check_cleaned_up(fakes)

    run(main)


# ------------------------------------------------------------------------ concurrent map


@EXAMPLES
@given(
    xs=st.lists(st.integers(min_value=0, max_value=20), max_size=20),
    kind=source_kinds,
    concurrency=st.integers(min_value=1, max_value=5),
    window=st.one_of(st.none(), st.integers(min_value=1, max_value=8)),
    leave=exits,
)
def test_an_ordered_concurrent_map_equals_the_sequential_map(
    xs: list[int], kind: str, concurrency: int, window: int | None, leave: Exit
) -> None:
    async def slow_square(x: int) -> int:
        await trio.sleep(x % 7)  # items finish out of order
        return x * x

    expected = [x * x for x in xs]

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        stream = source(kind, xs, fakes).map(
            slow_square, concurrency=concurrency, ordered=True, window=window
        )
        got = await consume(stream, leave)
        assert_prefix(got, expected)
        if leave.how == "end":
            assert got == expected
        check_cleaned_up(fakes)

    run(main)
