"""Properties (hypothesis) of zip, chain, flat_map, switch_map, scan, distinct_until_changed,
catch, retry, debounce and throttle, each against a reference computed on plain lists.

Every example runs in its own ``trio.run`` on a virtual clock (``test_properties_stages.run``:
no task or async generator left behind) and is consumed either with a random early exit
(``consume``: end, break, cancel or raise after m items; the items delivered are the first
ones expected) or with impatient requests (``impatient``: every request cancelled after a
random time, then asked again; the result is exactly the expected one: a cancelled request
loses nothing and duplicates nothing, and calls no user function twice).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from typing import TypeVar

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties_stages import (
    Exit,
    check_cleaned_up,
    consume,
    exits,
    ints,
    run,
    source,
    source_kinds,
)

import beluga_trio as bt
from beluga_trio.testing import ScriptedError, ScriptedProducer, assert_prefix

T = TypeVar("T")

EXAMPLES = settings(deadline=None, max_examples=100)

patience = st.lists(st.sampled_from([0.0, 0.05, 0.3, 1.0, 10.0]), min_size=1, max_size=8)


async def impatient(stream: bt.Stream[T], waits: Sequence[float]) -> list[T]:
    """Read everything, each request first bounded by the next of ``waits`` (cycled); a
    request that times out is asked again at once, without a bound (so the loop progresses
    even on a virtual clock, which does not advance while a task is busy)."""
    got: list[T] = []
    cycle = itertools.cycle(waits)
    async with stream.open() as items:
        while True:
            with trio.move_on_after(next(cycle)) as scope:
                try:
                    got.append(await anext(items))
                except StopAsyncIteration:
                    return got
            if scope.cancelled_caught:
                try:
                    got.append(await anext(items))
                except StopAsyncIteration:
                    return got


async def read(stream: bt.Stream[T], leave: Exit | None, waits: Sequence[float]) -> list[T]:
    return await impatient(stream, waits) if leave is None else await consume(stream, leave)


leaves = st.one_of(st.none(), exits)


def check(got: list[T], expected: list[T], leave: Exit | None) -> None:
    assert_prefix(got, expected)
    if leave is None or leave.how == "end":
        assert got == expected


def slow(xs: Sequence[int], fakes: list[ScriptedProducer[int]], delay: float) -> bt.Stream[int]:
    fake = ScriptedProducer(xs, delay=delay)
    fakes.append(fake)
    return fake.stream()


# ----------------------------------------------------------------------- zip and chain


@EXAMPLES
@given(
    lists=st.lists(ints, min_size=1, max_size=4),
    kinds=st.lists(source_kinds, min_size=4, max_size=4),
    leave=leaves,
    waits=patience,
)
def test_zip_is_builtin_zip(
    lists: list[list[int]], kinds: list[str], leave: Exit | None, waits: list[float]
) -> None:
    expected = list(zip(*lists, strict=False))

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        streams = [source(k, xs, fakes) for k, xs in zip(kinds, lists, strict=False)]
        check(await read(bt.zip(*streams), leave, waits), expected, leave)
        check_cleaned_up(fakes)

    run(main)


@EXAMPLES
@given(
    lists=st.lists(ints, max_size=4),
    kinds=st.lists(source_kinds, min_size=4, max_size=4),
    leave=leaves,
    waits=patience,
)
def test_chain_is_concatenation(
    lists: list[list[int]], kinds: list[str], leave: Exit | None, waits: list[float]
) -> None:
    expected = [x for xs in lists for x in xs]

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        streams = [source(k, xs, fakes) for k, xs in zip(kinds, lists, strict=False)]
        check(await read(bt.chain(*streams), leave, waits), expected, leave)
        check_cleaned_up(fakes)
        opened = [f.opened for f in fakes]
        assert opened == sorted(opened, reverse=True), "a source opened before the one before"

    run(main)


# ------------------------------------------------------------------ flat_map, switch_map


@EXAMPLES
@given(
    xs=st.lists(st.integers(min_value=0, max_value=4), max_size=8),
    kind=source_kinds,
    concurrency=st.integers(min_value=1, max_value=4),
    delay=st.sampled_from([0.0, 0.1, 1.0]),
    leave=leaves,
    waits=patience,
)
def test_flat_map_is_nested_concatenation(  # noqa: PLR0917 - hypothesis arguments
    xs: list[int],
    kind: str,
    concurrency: int,
    delay: float,
    leave: Exit | None,
    waits: list[float],
) -> None:
    # Inner stream i yields (i, 0), ..., (i, n - 1): its position and its own index.
    expected = [(i, j) for i, n in enumerate(xs) for j in range(n)]

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        calls: list[int] = []
        position = itertools.count()

        def inner(n: int) -> bt.Stream[tuple[int, int]]:
            calls.append(n)
            i = next(position)
            return slow(range(n), fakes, delay * (1 + i % 3)).map(lambda j: (i, j))

        stream = source(kind, xs, fakes).flat_map(inner, concurrency=concurrency)
        got = await read(stream, leave, waits)
        if concurrency == 1:
            check(got, expected, leave)
        else:
            assert len(set(got)) == len(got), f"duplicates in {got}"
            for i in range(len(xs)):
                assert_prefix([p for p in got if p[0] == i], [p for p in expected if p[0] == i])
            if leave is None or leave.how == "end":
                assert Counter(got) == Counter(expected)
        assert calls == xs[: len(calls)]
        check_cleaned_up(fakes)

    run(main)


@EXAMPLES
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.5, 1.5, 3.0]), max_size=6),
    length=st.integers(min_value=0, max_value=4),
    waits=patience,
)
def test_switch_map_delivers_each_inner_stream_until_the_next_item(
    gaps: list[float], length: int, waits: list[float]
) -> None:
    # Outer item k arrives at T_k (the sum of the gaps so far); its inner stream yields
    # (k, 0), (k, 1), ... at T_k + 1, T_k + 2, ...; the switch at T_{k+1} cuts it. Gaps are
    # multiples of 0.5 and inner items come at whole seconds plus 0.25 to avoid ties.
    times = list(itertools.accumulate(gaps))
    expected: list[tuple[int, int]] = []
    for k, t in enumerate(times):
        cut = times[k + 1] if k + 1 < len(times) else float("inf")
        expected.extend((k, j) for j in range(length) if t + 0.25 + j < cut)

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []

        @bt.stream
        async def outer() -> AsyncGenerator[int, None]:
            t0 = trio.current_time()
            for k, t in enumerate(times):
                await trio.sleep_until(t0 + t)
                yield k

        def inner(k: int) -> bt.Stream[tuple[int, int]]:
            @bt.stream
            async def reply() -> AsyncGenerator[tuple[int, int], None]:
                await trio.sleep(0.25)
                for j in range(length):
                    yield (k, j)
                    if j + 1 < length:
                        await trio.sleep(1)

            return reply()

        got = await impatient(outer().switch_map(inner), waits)
        assert got == expected
        check_cleaned_up(fakes)

    run(main)


# --------------------------------------------------------------- scan, distinct, catch


async def _add(acc: int, x: int) -> int:
    await trio.sleep(0.1)
    return acc + x


@EXAMPLES
@given(xs=ints, kind=source_kinds, is_async=st.booleans(), leave=leaves, waits=patience)
def test_scan_is_accumulate(
    xs: list[int], kind: str, is_async: bool, leave: Exit | None, waits: list[float]
) -> None:
    expected = list(itertools.accumulate(xs, initial=100))

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        calls: list[int] = []

        def add(acc: int, x: int) -> int:
            calls.append(x)
            return acc + x

        async def add_async(acc: int, x: int) -> int:
            calls.append(x)
            return await _add(acc, x)

        s = source(kind, xs, fakes)
        stream = s.scan(add_async, 100) if is_async else s.scan(add, 100)
        check(await read(stream, leave, waits), expected, leave)
        assert calls == xs[: len(calls)], "fn called twice for an item, or out of order"
        check_cleaned_up(fakes)

    run(main)


@EXAMPLES
@given(
    xs=st.lists(st.integers(min_value=0, max_value=3), max_size=25),
    kind=source_kinds,
    by_parity=st.booleans(),
    leave=leaves,
    waits=patience,
)
def test_distinct_until_changed_is_groupby(
    xs: list[int], kind: str, by_parity: bool, leave: Exit | None, waits: list[float]
) -> None:
    def parity(x: int) -> int:
        return x % 2

    key = parity if by_parity else None
    expected = [next(g) for _, g in itertools.groupby(xs, key=key)]

    async def main() -> None:
        fakes: list[ScriptedProducer[int]] = []
        stream = source(kind, xs, fakes).distinct_until_changed(key=key)
        check(await read(stream, leave, waits), expected, leave)
        check_cleaned_up(fakes)

    run(main)


@EXAMPLES
@given(
    xs=ints,
    fail_at=st.integers(min_value=0, max_value=25),
    fallback=ints,
    leave=leaves,
    waits=patience,
)
def test_catch_is_prefix_then_fallback(
    xs: list[int], fail_at: int, fallback: list[int], leave: Exit | None, waits: list[float]
) -> None:
    fail_at = min(fail_at, len(xs))
    expected = xs[:fail_at] + fallback

    async def main() -> None:
        upstream = ScriptedProducer(xs, raise_before=fail_at, delay=0.1)
        handled: list[BaseException] = []

        def handler(exc: Exception) -> bt.Stream[int]:
            handled.append(exc)
            return bt.from_iterable(fallback)

        check(await read(upstream.stream().catch(handler), leave, waits), expected, leave)
        assert len(handled) <= 1
        if handled:
            assert handled[0] is upstream.last.exception
        check_cleaned_up([upstream])

    run(main)


# ------------------------------------------------------------------------------- retry


@EXAMPLES
@given(
    xs=st.lists(st.integers(), min_size=2, max_size=6),
    failures=st.integers(min_value=0, max_value=4),
    attempts=st.integers(min_value=1, max_value=4),
    late=st.booleans(),
    waits=patience,
)
def test_retry_never_duplicates_a_prefix(
    xs: list[int], failures: int, attempts: int, late: bool, waits: list[float]
) -> None:
    # The first `failures` openings fail: before their first item, or (late) after it.
    async def main() -> None:
        openings = 0

        @bt.stream
        async def flaky() -> AsyncGenerator[int, None]:
            nonlocal openings
            openings += 1
            failing = openings <= failures
            for i, x in enumerate(xs):
                if failing and i == (1 if late else 0):
                    raise ScriptedError(f"opening {openings}")
                await trio.sleep(0.1)
                yield x

        got: list[int] = []
        error: BaseException | None = None
        try:
            got = await impatient(flaky().retry(attempts, backoff=0.5), waits)
        except ScriptedError as exc:
            error = exc
        if failures == 0:
            assert got == xs
        elif late:
            assert openings == 1  # an item reached the consumer: never re-opened
            assert error is not None
        elif failures < attempts:
            assert got == xs
            assert openings == failures + 1
        else:
            assert error is not None
            assert openings == attempts

    run(main)


# ------------------------------------------------------------------ debounce, throttle

# Item i arrives at times[i] (strictly increasing, on a grid of 0.1 s). A deadline is an
# arrival plus k windows (a throttle's periods follow each other); windows of 0.2345 and
# 0.4321 s make k windows a multiple of 0.1 s only for k >= 200, so an arrival never ties
# with a deadline (a tie has no defined winner).
timelines = st.lists(st.integers(min_value=1, max_value=12), max_size=12).map(
    lambda steps: [round(0.1 * t, 6) for t in itertools.accumulate(steps)]
)
windows = st.sampled_from([0.2345, 0.4321])


def _marble(times: Sequence[float]) -> bt.Stream[int]:
    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        t0 = trio.current_time()
        for i, t in enumerate(times):
            await trio.sleep_until(t0 + t)
            yield i

    return produce()


def debounce_reference(times: Sequence[float], w: float) -> list[int]:
    return [i for i in range(len(times)) if i + 1 == len(times) or times[i + 1] - times[i] > w]


def throttle_latest_reference(times: Sequence[float], w: float) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    period_end = -1.0
    pending: int | None = None
    for i, t in enumerate(times):
        while pending is not None and t > period_end:  # the period ended before this item
            out.append((period_end, pending))
            pending, period_end = None, period_end + w
        if t >= period_end:
            out.append((t, i))
            period_end = t + w
        else:
            pending = i
    if pending is not None:
        out.append((period_end, pending))
    return out


def throttle_first_reference(times: Sequence[float], w: float) -> list[int]:
    out: list[int] = []
    period_end = -1.0
    for i, t in enumerate(times):
        if t >= period_end:
            out.append(i)
            period_end = t + w
    return out


async def _timed(stream: bt.Stream[int]) -> list[tuple[float, int]]:
    t0 = trio.current_time()
    async with stream.open() as items:
        got = [(round(trio.current_time() - t0, 6), x) async for x in items]
    return got


@EXAMPLES
@given(times=timelines, w=windows, waits=patience)
def test_debounce_keeps_the_items_followed_by_silence(
    times: list[float], w: float, waits: list[float]
) -> None:
    async def main() -> None:
        assert await impatient(_marble(times).debounce(w), waits) == debounce_reference(times, w)
        got = await _timed(_marble(times).debounce(w))
        for at, i in got:  # due once the window passed, or at once at the end
            assert at == round(times[i] + w if i + 1 < len(times) else times[i], 6)

    run(main)


@EXAMPLES
@given(times=timelines, w=windows, waits=patience)
def test_throttle_latest_matches_the_reference(
    times: list[float], w: float, waits: list[float]
) -> None:
    expected = throttle_latest_reference(times, w)

    async def main() -> None:
        assert await impatient(_marble(times).throttle(w), waits) == [i for _, i in expected]
        got = await _timed(_marble(times).throttle(w))
        assert got == [(round(t, 6), i) for t, i in expected]

    run(main)


@EXAMPLES
@given(times=timelines, w=windows, waits=patience)
def test_throttle_first_matches_the_reference(
    times: list[float], w: float, waits: list[float]
) -> None:
    expected = throttle_first_reference(times, w)

    async def main() -> None:
        got = await impatient(_marble(times).throttle(w, keep="first"), waits)
        assert got == expected

    run(main)
