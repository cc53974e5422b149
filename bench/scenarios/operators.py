"""Scenarios "zip", "chain", "flat_map", "scan", "distinct", "catch", "retry", "debounce",
"throttle": the operators every stream library has, one scenario each.

Each operator is compared with the same job hand-written in trio (the reference: plain async
generators in the consumer's task, no checkpoints, the floor any library adds to) and with
aiostream's operator on asyncio where aiostream has one (``zip``, ``chain``, ``concatmap``,
``flatmap``, ``accumulate``). Sources are synchronous ranges for beluga (its taskless source)
and never-awaiting async generators for the hand-written code and aiostream, as in the other
scenarios. Every job returns the list of items, checked against the expected one.

``catch`` and ``retry`` run over a stream that never fails: the cost measured is what guarding
a stream costs per item. ``debounce`` and ``throttle`` run over a source whose items all arrive
at once (no timer ever fires between them): the cost measured is reading the upstream under a
deadline (debounce: the result is the last item) or dropping an item (throttle with
``keep="first"``: the result is the first item).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
from typing import Any, Final, Protocol, TypeVar, cast

import trio

import beluga_trio as bt
from bench._harness import Check, Contender, Job, Scenario
from bench._peers import optional_module
from bench.scenarios._common import Sources, split

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

INNER = 10  # items per inner stream (flat_map)


class _AioStream(AsyncIterable[T_co], Protocol[T_co]):
    def stream(self) -> AbstractAsyncContextManager[AsyncIterator[T_co]]: ...


def _aiostream() -> Any:
    return optional_module("aiostream.stream")


async def _drain_aiostream(s: _AioStream[T]) -> list[T]:
    async with s.stream() as items:
        return [x async for x in items]


async def _drain(gen: AsyncGenerator[T, None]) -> list[T]:
    async with aclosing(gen) as items:
        return [x async for x in items]


def _beluga(build: Callable[[int], bt.Stream[Any]]) -> Callable[[], Job]:
    def load() -> Job:
        async def job(n: int) -> list[Any]:
            return await build(n).collect()

        return job

    return load


def _hand(build: Callable[[int], AsyncGenerator[Any, None]]) -> Callable[[], Job]:
    def load() -> Job:
        async def job(n: int) -> list[Any]:
            return await _drain(build(n))

        return job

    return load


def _aio(build: Callable[[Any, int], _AioStream[Any]]) -> Callable[[], Job]:
    def load() -> Job:
        stream = _aiostream()

        async def job(n: int) -> list[Any]:
            return await _drain_aiostream(build(stream, n))

        return job

    return load


REFERENCE = "hand-written async generators"


def _scenario(
    name: str,
    description: str,
    *,
    hand: Callable[[int], AsyncGenerator[Any, None]],
    beluga: Callable[[int], bt.Stream[Any]],
    expected: Callable[[int], object],
    aiostream: tuple[str, Callable[[Any, int], _AioStream[Any]]] | None = None,
    items: int = 100_000,
    smoke_items: int = 1_000,
    reference: str = REFERENCE,
    check: Check | None = None,
) -> Scenario:
    contenders = [
        Contender(reference, _hand(hand)),
        Contender(f"beluga {name}", _beluga(beluga), goal=1.25),
    ]
    if aiostream is not None:
        label, build = aiostream
        contenders.append(
            Contender(f"aiostream {label}", _aio(build), loop="asyncio", note="peer, on asyncio")
        )
    return Scenario(
        name=name,
        description=description,
        items=items,
        smoke_items=smoke_items,
        reference=reference,
        contenders=tuple(contenders),
        expected=expected,
        check=check,
    )


# -------------------------------------------------------------------------------- zip


async def _hand_zip(n: int) -> AsyncGenerator[tuple[int, int], None]:
    a, b = Sources.count(n), Sources.count(n)
    try:
        while True:
            try:
                x = await anext(a)
                y = await anext(b)
            except StopAsyncIteration:
                return
            yield (x, y)
    finally:
        await a.aclose()
        await b.aclose()


ZIP = _scenario(
    "zip",
    "zip(a, b) of two sources of N items, every tuple collected",
    hand=_hand_zip,
    beluga=lambda n: bt.zip(bt.from_iterable(range(n)), bt.from_iterable(range(n))),
    aiostream=(
        "stream.zip",
        lambda s, n: s.zip(s.iterate(Sources.count(n)), s.iterate(Sources.count(n))),
    ),
    expected=lambda n: [(i, i) for i in range(n)],
)


# ------------------------------------------------------------------------------ chain


async def _hand_chain(n: int) -> AsyncGenerator[int, None]:
    for r in split(n, 3):
        async with aclosing(Sources.span(r.start, r.stop)) as part:
            async for x in part:
                yield x  # noqa: ASYNC119 - the hand-written reference, drained at once


CHAIN = _scenario(
    "chain",
    "chain(a, b, c) of three sources of N/3 items, every item collected",
    hand=_hand_chain,
    beluga=lambda n: bt.chain(*(bt.from_iterable(r) for r in split(n, 3))),
    aiostream=(
        "stream.chain",
        lambda s, n: s.chain(*(s.iterate(Sources.span(r.start, r.stop)) for r in split(n, 3))),
    ),
    expected=lambda n: list(range(n)),
)


# --------------------------------------------------------------------------- flat_map


def _aio_inner(s: Any, size: int = INNER) -> Callable[[int], _AioStream[int]]:
    def inner(x: int) -> _AioStream[int]:
        return cast("_AioStream[int]", s.iterate(Sources.span(x * size, x * size + size)))

    return inner


def _flat_map(size: int, name: str, items: int = 100_000) -> Scenario:
    """flat_map(fn) over N/size items, each to a stream of ``size``: the cost of an inner
    stream's opening is spread over ``size`` items."""

    async def hand(n: int) -> AsyncGenerator[int, None]:
        async with aclosing(Sources.count(n // size)) as outer:
            async for x in outer:
                async with aclosing(Sources.span(x * size, x * size + size)) as inner:
                    async for y in inner:
                        yield y  # noqa: ASYNC119 - the hand-written reference, drained at once

    return _scenario(
        name,
        f"flat_map(fn) of N/{size} items, each to a stream of {size}, drained in order",
        hand=hand,
        beluga=lambda n: bt.from_iterable(range(n // size)).flat_map(
            lambda x: bt.from_iterable(range(x * size, x * size + size))
        ),
        aiostream=(
            "concatmap",
            lambda s, n: s.concatmap(s.iterate(Sources.count(n // size)), _aio_inner(s, size)),
        ),
        expected=lambda n: list(range(n // size * size)),
        items=items,
    )


#: Items per inner stream, by scenario name: an inner stream's opening is the same cost
#: spread over 1, 10 or 100 items (fewer in all with 1, where aiostream is slow).
FLAT_MAP_SIZES: Final = {
    "flat_map": INNER,
    "flat_map, inner streams of 1": 1,
    "flat_map, inner streams of 100": 100,
}
FLAT_MAP, FLAT_MAP_1, FLAT_MAP_100 = (
    _flat_map(size, name, items=20_000 if size == 1 else 100_000)
    for name, size in FLAT_MAP_SIZES.items()
)


async def _hand_flat_map_concurrent(n: int) -> AsyncGenerator[int, None]:
    """A nursery, a task per inner stream (at most 4 at once), one channel of 64."""
    tx, rx = trio.open_memory_channel[int](64)
    limit = trio.Semaphore(4)

    async def inner(x: int, tx: trio.MemorySendChannel[int]) -> None:
        async with tx:
            try:
                async for y in Sources.span(x * INNER, x * INNER + INNER):  # noqa: ASYNC900
                    await tx.send(y)
            finally:
                limit.release()

    async def outer(nursery: trio.Nursery) -> None:
        async with tx:
            for x in range(n // INNER):
                await limit.acquire()
                nursery.start_soon(inner, x, tx.clone())

    async with trio.open_nursery() as nursery:  # noqa: ASYNC119 - consumed in this task
        nursery.start_soon(outer, nursery)
        async with rx:
            async for y in rx:
                yield y  # noqa: ASYNC119


FLAT_MAP_4 = _scenario(
    "flat_map(concurrency=4)",
    f"flat_map(fn, concurrency=4) of N/{INNER} items, each to a stream of {INNER}, items in"
    " arrival order; reference: a nursery, a task per inner stream, one channel(64)",
    reference="hand-written nursery + channel(64)",
    hand=_hand_flat_map_concurrent,
    beluga=lambda n: bt.from_iterable(range(n // INNER)).flat_map(
        lambda x: bt.from_iterable(range(x * INNER, x * INNER + INNER)), concurrency=4
    ),
    aiostream=(
        "flatmap(task_limit=4)",
        lambda s, n: s.flatmap(s.iterate(Sources.count(n // INNER)), _aio_inner(s), task_limit=4),
    ),
    expected=lambda n: list(range(n // INNER * INNER)),
    check=lambda got, expected: (
        None
        if isinstance(got, list) and sorted(cast("list[int]", got)) == expected
        else "not the expected multiset"
    ),
)


# ------------------------------------------------------------------------- switch_map


def switched(got: object, expected: object) -> str | None:
    """A switch_map result over inner streams of `INNER` items, checked as one: which inner
    streams were switched away from, and after how many items, depends on scheduling; each
    inner stream's items come in order and only before the next one's, and the last one's all
    come."""
    n = cast("int", expected)
    if not isinstance(got, list):
        return f"not a list: {type(got).__name__}"
    items = cast("list[int]", got)
    last = n - 1
    previous = -1
    for y in items:
        if y // INNER < previous // INNER or (
            y // INNER == previous // INNER and y != previous + 1
        ):
            return f"{y} after {previous}: not a switch_map of in-order inner streams"
        if y // INNER > previous // INNER and y % INNER:
            return f"inner stream {y // INNER} starts at {y}, not at its first item"
        previous = y
    if items[-INNER:] != list(range(last * INNER, last * INNER + INNER)):
        return "the last inner stream did not run to its end"
    return None


async def _hand_switch_map(n: int) -> AsyncGenerator[int, None]:
    """A nursery; a driver task reads the outer stream and, per item, cancels the inner
    task running (and waits until it has stopped) before starting the next; items pass
    through a channel without room."""
    tx, rx = trio.open_memory_channel[int](0)

    async def inner(x: int, cancel_scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with cancel_scope:
                async with aclosing(Sources.span(x * INNER, x * INNER + INNER)) as items:
                    async for y in items:
                        await tx.send(y)
        finally:
            done.set()

    async def drive(nursery: trio.Nursery) -> None:
        async with aclosing(Sources.count(n)) as outer:
            running: tuple[trio.CancelScope, trio.Event] | None = None
            async for x in outer:
                if running is not None:
                    running[0].cancel()
                    await running[1].wait()
                running = (trio.CancelScope(), trio.Event())
                nursery.start_soon(inner, x, *running)
            if running is not None:
                await running[1].wait()
        await tx.aclose()

    async with trio.open_nursery() as nursery:  # noqa: ASYNC119 - consumed in this task
        nursery.start_soon(drive, nursery)
        async with rx:
            async for y in rx:
                yield y  # noqa: ASYNC119


SWITCH_MAP = _scenario(
    "switch_map",
    f"switch_map(fn) of N items that arrive at once, each to a stream of {INNER}: per switch"
    " (the inner stream running is stopped, and has stopped, before the next starts);"
    " reference: a nursery, a driver task, a task per inner stream, channel(0)",
    reference="hand-written nursery + channel(0)",
    hand=_hand_switch_map,
    beluga=lambda n: bt.from_iterable(range(n)).switch_map(
        lambda x: bt.from_iterable(range(x * INNER, x * INNER + INNER))
    ),
    aiostream=(
        "switchmap",
        lambda s, n: s.switchmap(s.iterate(Sources.count(n)), _aio_inner(s)),
    ),
    expected=lambda n: n,
    check=switched,
    items=10_000,
    smoke_items=200,
)


# ------------------------------------------------------------------------------- scan


def _add(acc: int, x: int) -> int:
    return acc + x


async def _hand_scan(n: int) -> AsyncGenerator[int, None]:
    acc = 0
    yield acc
    async with aclosing(Sources.count(n)) as source:
        async for x in source:
            acc = _add(acc, x)
            yield acc  # noqa: ASYNC119 - the hand-written reference, drained at once


SCAN = _scenario(
    "scan",
    "scan(add, 0) over N items, every running sum collected",
    hand=_hand_scan,
    beluga=lambda n: bt.from_iterable(range(n)).scan(_add, 0),
    aiostream=(
        "accumulate",
        lambda s, n: s.accumulate(s.iterate(Sources.count(n)), _add, initializer=0),
    ),
    expected=lambda n: list(itertools.accumulate(range(n), initial=0)),
)


# --------------------------------------------------------------------------- distinct


async def _hand_distinct(n: int) -> AsyncGenerator[int, None]:
    last: object = object()
    async with aclosing(Sources.count(n)) as source:
        async for x in source:
            key = x // 4
            if key != last:
                last = key
                yield x  # noqa: ASYNC119 - the hand-written reference, drained at once


DISTINCT = _scenario(
    "distinct_until_changed",
    "distinct_until_changed(key=x // 4) over N items (runs of 4 equal keys)",
    hand=_hand_distinct,
    beluga=lambda n: bt.from_iterable(range(n)).distinct_until_changed(key=lambda x: x // 4),
    expected=lambda n: list(range(0, n, 4)),
)


# ------------------------------------------------------------------------ catch, retry


async def _hand_catch(n: int) -> AsyncGenerator[int, None]:
    try:
        async with aclosing(Sources.count(n)) as source:
            async for x in source:
                yield x  # noqa: ASYNC119 - the hand-written reference, drained at once
    except Exception:  # noqa: BLE001 - the fallback
        yield -1


CATCH = _scenario(
    "catch",
    "catch(handler) over N items that never fail: the cost of the guard per item",
    hand=_hand_catch,
    beluga=lambda n: bt.from_iterable(range(n)).catch(lambda _: bt.from_iterable([-1])),
    expected=lambda n: list(range(n)),
)


async def _hand_retry(n: int) -> AsyncGenerator[int, None]:
    for attempt in range(3):
        delivered = False
        try:
            async with aclosing(Sources.count(n)) as source:
                async for x in source:
                    delivered = True
                    yield x  # noqa: ASYNC119 - the hand-written reference, drained at once
        except OSError:
            if delivered or attempt == 2:
                raise
        else:
            return


RETRY = _scenario(
    "retry",
    "retry(3) over N items that never fail: the cost of the guard per item",
    hand=_hand_retry,
    beluga=lambda n: bt.from_iterable(range(n)).retry(3, on=OSError),
    expected=lambda n: list(range(n)),
)


# -------------------------------------------------------------------- debounce, throttle


async def _hand_debounce(n: int) -> AsyncGenerator[int, None]:
    """Read under a deadline; deliver the held item once quiet, or at the end."""
    source = Sources.count(n)
    pending: int | None = None
    deadline = math.inf
    try:
        while True:
            with trio.move_on_at(deadline):
                try:
                    pending = await anext(source)
                except StopAsyncIteration:
                    break
                deadline = trio.current_time() + 10
                continue
            if pending is not None:
                yield pending
                pending, deadline = None, math.inf
        if pending is not None:
            yield pending
    finally:
        await source.aclose()


DEBOUNCE = _scenario(
    "debounce",
    "debounce(10) over N items that arrive at once: reading under a deadline, per item",
    hand=_hand_debounce,
    beluga=lambda n: bt.from_iterable(range(n)).debounce(10),
    expected=lambda n: [n - 1],
)


async def _hand_throttle(n: int) -> AsyncGenerator[int, None]:
    """The first item of each period; the rest of the period dropped."""
    period_end = -math.inf
    async with aclosing(Sources.count(n)) as source:
        async for x in source:
            now = trio.current_time()
            if now >= period_end:
                period_end = now + 1000
                yield x  # noqa: ASYNC119 - the hand-written reference, drained at once


THROTTLE = _scenario(
    "throttle",
    "throttle(1000, keep='first') over N items that arrive at once: the cost of a dropped item",
    hand=_hand_throttle,
    beluga=lambda n: bt.from_iterable(range(n)).throttle(1000, keep="first"),
    expected=lambda n: [0],
)

SCENARIOS: tuple[Scenario, ...] = (
    ZIP,
    CHAIN,
    FLAT_MAP,
    FLAT_MAP_1,
    FLAT_MAP_100,
    FLAT_MAP_4,
    SWITCH_MAP,
    SCAN,
    DISTINCT,
    CATCH,
    RETRY,
    DEBOUNCE,
    THROTTLE,
)
