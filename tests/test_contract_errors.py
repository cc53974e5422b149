"""Contract tests (black-box): "The guarantees" of docs/design.md.

1. one error arrives as itself; 2. leaving is stopping; 3. cancellation is never a clean end;
4. nothing lost, nothing duplicated; 5. always cancellable, never starving.
"""

import itertools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from functools import partial

import pytest
import trio
import trio.testing
from _helpers import (
    CHANNEL_KINDS,
    CleanupRecord,
    Probe,
    Watchdog,
    awaiting_cleanup_producer,
    contains_identical,
    drain_with_timeouts,
    nursery_holding_producer,
    raised_by,
    raising_cleanup,
    reachable,
    receive_side,
    scope_holding_producer,
    tasks_living,
)

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks

# --------------------------------------------------------------------------------------------
# Leaving is stopping
# --------------------------------------------------------------------------------------------


def _counting(probe: Probe) -> bt.Stream[int]:
    """``0..4``, one per second, counting in ``probe`` (the table's producers share it)."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            for i in range(5):
                probe.started += 1
                await trio.sleep(1)
                probe.produced += 1
                yield i
        finally:
            probe.finalized += 1

    return produce()


def _plain_producer(probe: Probe) -> bt.Stream[int]:
    return _counting(probe)


def _pipeline_producer(probe: Probe) -> bt.Stream[int]:
    async def same(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x

    return _counting(probe).map(same).filter(lambda x: x >= 0).skip(0).take(99)


def _async_generator_source(probe: Probe) -> bt.Stream[int]:
    async def produce() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            for i in range(5):
                await trio.sleep(1)
                yield i
        finally:
            probe.finalized += 1

    return bt.from_iterable(produce())


PRODUCERS: dict[str, Callable[[Probe], bt.Stream[int]]] = {
    "plain": _plain_producer,
    "cancel-scope": scope_holding_producer,
    "nursery": nursery_holding_producer,
    "pipeline": _pipeline_producer,
    "async-generator-source": _async_generator_source,
}


class ExitRecord:
    """What was true at the moment the `async with` statement finished."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.finalized = -1
        self.tasks = -1

    def record(self) -> None:
        self.finalized = self.probe.finalized
        self.tasks = tasks_living()


async def _leave(route: str, s: bt.Stream[int], rec: ExitRecord) -> list[int]:
    got: list[int] = []
    if route == "end":
        try:
            async with s.open() as it:
                got.extend([x async for x in it])
        finally:
            rec.record()
        assert got == [0, 1, 2, 3, 4]
    elif route == "break":
        try:
            async with s.open() as it:
                async for x in it:
                    got.append(x)
                    if x == 2:
                        break
        finally:
            rec.record()
    elif route == "return":

        async def inner() -> int:
            try:
                async with s.open() as it:
                    async for x in it:
                        got.append(x)
                        if x == 2:
                            return x
            finally:
                rec.record()
            return -1

        assert await inner() == 2
    elif route == "raise":
        err = KeyError("from the consumer's body")

        async def body() -> None:
            try:
                async with s.open() as it:
                    async for x in it:
                        got.append(x)
                        if x == 2:
                            raise err
            finally:
                rec.record()

        assert await raised_by(body) is err
    elif route == "cancel":
        after = False
        with trio.CancelScope() as cs:
            try:
                async with s.open() as it:
                    async for x in it:
                        got.append(x)
                        if x == 2:
                            cs.cancel()
            finally:
                rec.record()
            after = True
        assert cs.cancelled_caught
        assert not after
    elif route == "deadline":
        after = False
        with trio.move_on_after(2.5) as cs:
            try:
                async with s.open() as it:
                    async for x in it:
                        got.append(x)  # noqa: PERF401 -- keep what came before the cancellation
            finally:
                rec.record()
            after = True
        assert cs.cancelled_caught
        assert not after
    else:  # pragma: no cover
        raise AssertionError(route)
    return got


@pytest.mark.parametrize("route", ["end", "break", "return", "raise", "cancel", "deadline"])
@pytest.mark.parametrize("producer", list(PRODUCERS.values()), ids=list(PRODUCERS))
async def test_leaving_is_stopping(
    autojump_clock: trio.testing.MockClock,
    producer: Callable[[Probe], bt.Stream[int]],
    route: str,
) -> None:
    probe = Probe()
    rec = ExitRecord(probe)
    before = tasks_living()
    with trio.fail_after(1000):  # a hang fails instead of blocking forever
        got = await _leave(route, producer(probe), rec)
    assert rec.finalized == 1, "the producer's finally had not run when `async with` finished"
    assert rec.tasks == before, "a task outlived the `async with`"
    assert got == {"end": [0, 1, 2, 3, 4], "deadline": [0, 1]}.get(route, [0, 1, 2])
    assert probe.finalized == 1
    assert tasks_living() == before


async def _break_at_2(s: bt.Stream[int]) -> None:
    async with s.open() as it:
        async for x in it:
            if x == 2:
                break


async def _first(s: bt.Stream[int]) -> None:
    assert await s.first() == 0


async def _take_2(s: bt.Stream[int]) -> None:
    assert await s.take(2).collect() == [0, 1]


async def _to_end(s: bt.Stream[int]) -> None:
    assert await s.collect() == list(range(10))


@pytest.mark.parametrize(
    "stop", [_break_at_2, _first, _take_2, _to_end], ids=["break", "first", "take", "end"]
)
async def test_cleanup_after_a_plain_stop_is_not_cancelled(
    stop: Callable[[bt.Stream[int]], Awaitable[None]],
) -> None:
    rec = CleanupRecord()
    with trio.fail_after(10), no_leaks():
        await stop(awaiting_cleanup_producer(rec))
    assert rec.ran
    assert not rec.cancelled, "the producer's cleanup ran cancelled"
    assert rec.completed
    assert rec.deadline_ok


# --------------------------------------------------------------------------------------------
# Cleanup errors are not swallowed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("awaiting", [False, True], ids=["plain", "awaiting"])
@pytest.mark.parametrize(
    "stop", [_break_at_2, _first, _take_2, _to_end], ids=["break", "first", "take", "end"]
)
async def test_cleanup_error_is_not_swallowed(
    stop: Callable[[bt.Stream[int]], Awaitable[None]], awaiting: bool
) -> None:
    err = ValueError("cleanup")
    with trio.fail_after(10), no_leaks():
        exc = await raised_by(lambda: stop(raising_cleanup(err, awaiting=awaiting)))
    assert exc is err, repr(exc)


@pytest.mark.parametrize("awaiting", [False, True], ids=["plain", "awaiting"])
async def test_cleanup_error_and_body_error_both_arrive(awaiting: bool) -> None:
    cleanup_err = ValueError("cleanup")
    body_err = KeyError("body")

    async def consume() -> None:
        async with raising_cleanup(cleanup_err, awaiting=awaiting).open() as it:
            assert await anext(it) == 0
            raise body_err

    with trio.fail_after(10), no_leaks():
        exc = await raised_by(consume)
    everything = reachable(exc)
    assert contains_identical(everything, cleanup_err), repr(exc)
    assert contains_identical(everything, body_err), repr(exc)


@pytest.mark.parametrize("where", ["parked", "busy"])
async def test_cleanup_error_is_not_swallowed_on_cancellation(
    autojump_clock: trio.testing.MockClock, where: str
) -> None:
    err = ValueError("cleanup")

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        try:
            for i in range(10):
                await trio.sleep(1)
                yield i
        finally:
            raise err

    async def consume() -> None:
        with trio.CancelScope() as cs:
            async with produce().open() as it:
                async for x in it:
                    if x == 1:
                        if where == "parked":
                            cs.cancel()  # the producer waits at `yield`
                        else:
                            cs.deadline = trio.current_time() + 0.5  # while it computes

    with trio.fail_after(1000), no_leaks():
        exc = await raised_by(consume)
    assert contains_identical(reachable(exc), err), repr(exc)


# --------------------------------------------------------------------------------------------
# One error arrives as itself
# --------------------------------------------------------------------------------------------


def _producer_raising(err: BaseException) -> bt.Stream[int]:
    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        yield 0
        await trio.lowlevel.checkpoint()
        yield 1
        raise err

    return produce()


def _generator_raising(err: BaseException) -> bt.Stream[int]:
    def produce() -> Iterator[int]:
        yield 0
        yield 1
        raise err

    return bt.from_iterable(produce())


def _async_generator_raising(err: BaseException) -> bt.Stream[int]:
    async def produce() -> AsyncGenerator[int, None]:
        yield 0
        await trio.lowlevel.checkpoint()
        yield 1
        raise err

    return bt.from_iterable(produce())


def _raise_at_2(err: BaseException) -> Callable[[int], int]:
    def fn(x: int) -> int:
        if x == 2:
            raise err
        return x

    return fn


def _async_raise_at_2(err: BaseException) -> Callable[[int], Awaitable[int]]:
    async def fn(x: int) -> int:
        await trio.lowlevel.checkpoint()
        if x == 2:
            raise err
        return x

    return fn


def _pred_raise_at_2(err: BaseException) -> Callable[[int], bool]:
    def pred(x: int) -> bool:
        if x == 2:
            raise err
        return True

    return pred


def _async_pred_raise_at_2(err: BaseException) -> Callable[[int], Awaitable[bool]]:
    async def pred(x: int) -> bool:
        await trio.lowlevel.checkpoint()
        if x == 2:
            raise err
        return True

    return pred


FAILING: dict[str, Callable[[BaseException], bt.Stream[int]]] = {
    "producer": _producer_raising,
    "generator": _generator_raising,
    "async-generator": _async_generator_raising,
    "map-sync": lambda e: bt.from_iterable(range(9)).map(_raise_at_2(e)),
    "map-async": lambda e: ScriptedProducer.counting(9).stream().map(_async_raise_at_2(e)),
    "filter-sync": lambda e: ScriptedProducer.counting(9).stream().filter(_pred_raise_at_2(e)),
    "filter-async": lambda e: bt.from_iterable(range(9)).filter(_async_pred_raise_at_2(e)),
    "deep-pipeline": lambda e: (
        ScriptedProducer.counting(20)
        .stream()
        .skip(1)
        .map(lambda x: x - 1)
        .map(_raise_at_2(e))
        .take(10)
    ),
}


async def _t_collect(s: bt.Stream[int]) -> object:
    return await s.collect()


async def _t_open(s: bt.Stream[int]) -> object:
    async with s.open() as it:
        return [x async for x in it]


async def _t_last(s: bt.Stream[int]) -> object:
    return await s.last()


async def _t_reduce(s: bt.Stream[int]) -> object:
    return await s.reduce(lambda acc, x: acc + x, 0)


async def _t_for_each(s: bt.Stream[int]) -> object:
    seen: list[int] = []
    await s.for_each(seen.append)
    return seen


async def _t_collect_fn(s: bt.Stream[int]) -> object:
    return await bt.collect(s)


TERMINALS: dict[str, Callable[[bt.Stream[int]], Awaitable[object]]] = {
    "collect": _t_collect,
    "open": _t_open,
    "last": _t_last,
    "reduce": _t_reduce,
    "for_each": _t_for_each,
    "bt.collect": _t_collect_fn,
}


@pytest.mark.parametrize("terminal", list(TERMINALS.values()), ids=list(TERMINALS))
@pytest.mark.parametrize("failing", list(FAILING.values()), ids=list(FAILING))
async def test_one_error_arrives_as_itself(
    failing: Callable[[BaseException], bt.Stream[int]],
    terminal: Callable[[bt.Stream[int]], Awaitable[object]],
) -> None:
    err = ValueError("the one")
    with no_leaks():
        exc = await raised_by(lambda: terminal(failing(err)))
    assert exc is err, repr(exc)


@pytest.mark.parametrize("failing", list(FAILING.values()), ids=list(FAILING))
async def test_collect_result_captures_the_error_itself(
    failing: Callable[[BaseException], bt.Stream[int]],
) -> None:
    err = ValueError("the one")
    with no_leaks():
        result = await failing(err).collect_result()
    assert result.items == [0, 1]
    assert result.error is err


@pytest.mark.parametrize("failing", list(FAILING.values()), ids=list(FAILING))
async def test_own_exception_group_arrives_as_the_same_object(
    failing: Callable[[BaseException], bt.Stream[int]],
) -> None:
    group = ExceptionGroup("x", [ValueError("inner")])
    for terminal in TERMINALS.values():
        exc = await raised_by(partial(terminal, failing(group)))
        assert exc is group, repr(exc)
    result = await failing(group).collect_result()
    assert result.error is group


@pytest.mark.parametrize("failing", list(FAILING.values()), ids=list(FAILING))
async def test_keyboard_interrupt_arrives_as_itself(
    failing: Callable[[BaseException], bt.Stream[int]],
) -> None:
    for terminal in [_t_collect, _t_open]:
        ki = KeyboardInterrupt()
        exc = await raised_by(partial(terminal, failing(ki)))
        assert exc is ki, repr(exc)
    ki = KeyboardInterrupt()
    exc = await raised_by(lambda: failing(ki).collect_result())
    assert exc is ki, f"collect_result must not capture KeyboardInterrupt: {exc!r}"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_reduce_and_for_each_fn_errors_arrive_as_themselves(use_async: bool) -> None:
    err = ValueError("fn")

    def sync_fold(acc: int, x: int) -> int:
        if x == 2:
            raise err
        return acc + x

    async def async_fold(acc: int, x: int) -> int:
        await trio.lowlevel.checkpoint()
        return sync_fold(acc, x)

    def sync_visit(x: int) -> None:
        if x == 2:
            raise err

    async def async_visit(x: int) -> None:
        await trio.lowlevel.checkpoint()
        sync_visit(x)

    probe = ScriptedProducer.counting(10)
    s = probe.stream()
    with no_leaks():
        if use_async:
            exc = await raised_by(lambda: s.reduce(async_fold, 0))
        else:
            exc = await raised_by(lambda: s.reduce(sync_fold, 0))
        assert exc is err
        if use_async:
            exc = await raised_by(lambda: s.for_each(async_visit))
        else:
            exc = await raised_by(lambda: s.for_each(sync_visit))
        assert exc is err
    assert probe.cleanups == 2


@pytest.mark.parametrize("producer", list(PRODUCERS.values()), ids=list(PRODUCERS))
async def test_consumer_body_error_arrives_as_itself(
    autojump_clock: trio.testing.MockClock, producer: Callable[[Probe], bt.Stream[int]]
) -> None:

    async def consume(probe: Probe, err: BaseException) -> None:
        async with producer(probe).open() as it:
            await anext(it)
            raise err

    for err in [ValueError("body"), ExceptionGroup("mine", [KeyError(1)]), KeyboardInterrupt()]:
        probe = Probe()
        with trio.fail_after(1000), no_leaks():
            exc = await raised_by(partial(consume, probe, err))
        assert exc is err, repr(exc)
        assert probe.finalized == 1


@pytest.mark.parametrize("failing", list(FAILING.values()), ids=list(FAILING))
async def test_after_an_error_the_stream_is_finished(
    failing: Callable[[BaseException], bt.Stream[int]],
) -> None:
    err = ValueError("once")
    with no_leaks():
        async with failing(err).open() as it:
            assert await anext(it) == 0
            assert await anext(it) == 1
            with pytest.raises(ValueError, match="once") as info:
                await anext(it)
            assert info.value is err
            for _ in range(2):
                with pytest.raises(StopAsyncIteration):
                    await anext(it)


# --------------------------------------------------------------------------------------------
# Cancellation is never a clean end
# --------------------------------------------------------------------------------------------


def _hanging_producer() -> bt.Stream[int]:
    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        yield 0
        yield 1
        await trio.sleep_forever()
        yield 2  # pragma: no cover

    return produce()


def _hanging_async_generator() -> bt.Stream[int]:
    async def produce() -> AsyncGenerator[int, None]:
        yield 0
        yield 1
        await trio.sleep_forever()
        yield 2  # pragma: no cover

    return bt.from_iterable(produce())


async def _async_identity(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x


HANGING: dict[str, Callable[[], bt.Stream[int]]] = {
    "producer": _hanging_producer,
    "async-generator": _hanging_async_generator,
    "map-filter": lambda: _hanging_producer().map(_async_identity).filter(lambda x: x >= 0),
    "take-skip": lambda: _hanging_producer().skip(0).take(10),
    "async-map": lambda: bt.from_iterable(range(100)).map(_slow_after_1),
}


async def _slow_after_1(x: int) -> int:
    if x >= 2:
        await trio.sleep_forever()
    await trio.lowlevel.checkpoint()
    return x


@pytest.mark.parametrize("make", list(HANGING.values()), ids=list(HANGING))
async def test_cancelled_iteration_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, make: Callable[[], bt.Stream[int]]
) -> None:
    got: list[int] = []
    after_loop = False
    after_block = False
    with trio.fail_after(1000), no_leaks():
        with trio.move_on_after(1) as cs:
            async with make().open() as it:
                async for x in it:
                    got.append(x)  # noqa: PERF401 -- keep what came before the cancellation
                after_loop = True
            after_block = True
        assert cs.cancelled_caught
        assert not after_loop
        assert not after_block
        assert got == [0, 1]


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
async def test_cancelled_channel_stream_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    tx, rx = trio.open_memory_channel[int](10)
    tx.send_nowait(0)
    tx.send_nowait(1)
    got: list[int] = []
    after_loop = False
    with trio.move_on_after(1) as cs:
        async with bt.from_channel(receive_side(kind, rx)).open() as it:
            async for x in it:
                got.append(x)  # noqa: PERF401 -- keep what came before the cancellation
            after_loop = True
    assert cs.cancelled_caught
    assert not after_loop
    assert got == [0, 1]
    tx.close()


async def _t_collect_result(s: bt.Stream[int]) -> object:
    return await s.collect_result()


async def _t_first_after_1(s: bt.Stream[int]) -> object:
    return await s.skip(2).first()


CANCELLED_TERMINALS: dict[str, Callable[[bt.Stream[int]], Awaitable[object]]] = {
    **TERMINALS,
    "collect_result": _t_collect_result,
    "first": _t_first_after_1,
}


@pytest.mark.parametrize(
    "terminal", list(CANCELLED_TERMINALS.values()), ids=list(CANCELLED_TERMINALS)
)
@pytest.mark.parametrize("make", list(HANGING.values()), ids=list(HANGING))
async def test_cancelled_terminal_raises_cancelled(
    autojump_clock: trio.testing.MockClock,
    make: Callable[[], bt.Stream[int]],
    terminal: Callable[[bt.Stream[int]], Awaitable[object]],
) -> None:
    returned: list[object] = []
    with trio.fail_after(1000), no_leaks():
        with trio.move_on_after(1) as cs:
            returned.append(await terminal(make()))
        assert cs.cancelled_caught
        assert returned == []


# --------------------------------------------------------------------------------------------
# Nothing lost, nothing duplicated
# --------------------------------------------------------------------------------------------


def _channel_fed_by(nursery: trio.Nursery, n: int, kind: str) -> bt.Stream[int]:
    tx, rx = trio.open_memory_channel[int](0)

    async def feed() -> None:
        async with tx:
            for i in range(n):
                await trio.sleep(1)
                await tx.send(i)

    nursery.start_soon(feed)
    return bt.from_channel(receive_side(kind, rx))


def _sleepy_async_generator(n: int) -> bt.Stream[int]:
    async def produce() -> AsyncGenerator[int, None]:
        for i in range(n):
            await trio.sleep(1)
            yield i

    return bt.from_iterable(produce())


async def _slow_double(x: int) -> int:
    await trio.sleep(1)
    return 2 * x


LOSSLESS: dict[str, Callable[[trio.Nursery], tuple[bt.Stream[int], list[int]]]] = {
    "producer": lambda _: (ScriptedProducer.counting(8, delay=1.0).stream(), list(range(8))),
    "channel": lambda n: (_channel_fed_by(n, 8, "memory"), list(range(8))),
    "generic-channel": lambda n: (_channel_fed_by(n, 8, "generic"), list(range(8))),
    "async-generator": lambda _: (_sleepy_async_generator(8), list(range(8))),
    "async-map": lambda _: (bt.from_iterable(range(8)).map(_slow_double), list(range(0, 16, 2))),
    "producer-async-map-filter": lambda _: (
        ScriptedProducer.counting(12, delay=0.5)
        .stream()
        .map(_slow_double)
        .filter(lambda x: x % 4 == 0),
        list(range(0, 24, 4)),
    ),
}


@pytest.mark.parametrize("patience", [0.35, 0.75])
@pytest.mark.parametrize("make", list(LOSSLESS.values()), ids=list(LOSSLESS))
async def test_cancelled_anext_loses_nothing(
    autojump_clock: trio.testing.MockClock,
    make: Callable[[trio.Nursery], tuple[bt.Stream[int], list[int]]],
    patience: float,
) -> None:
    with trio.fail_after(1000), no_leaks():
        async with trio.open_nursery() as nursery:
            s, expected = make(nursery)
            async with s.open() as it:
                received, cancelled = await drain_with_timeouts(it, patience)
    assert received == expected
    assert cancelled >= len(expected) // 2


# --------------------------------------------------------------------------------------------
# Always cancellable, never starving (real clock)
# --------------------------------------------------------------------------------------------


def _huge_map(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(itertools.count()).map(wd.plus_one).collect()


def _huge_filter(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(itertools.count()).filter(wd.reject).first()


def _huge_skip(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(wd.count()).skip(10**12).first()


def _huge_range_filter(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(range(10**15)).filter(wd.reject).last()


def _huge_cycle(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(itertools.cycle([1, 2, 3])).map(wd.plus_one).skip(10**12).first()


def _huge_reduce(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(range(10**15)).map(wd.plus_one).reduce(lambda a, x: a ^ x, 0)


def _huge_for_each(wd: Watchdog) -> Awaitable[object]:
    return bt.from_iterable(wd.count()).for_each(lambda x: None)


HUGE: dict[str, Callable[[Watchdog], Awaitable[object]]] = {
    "count-map-collect": _huge_map,
    "count-filter-first": _huge_filter,
    "count-skip-first": _huge_skip,
    "range-filter-last": _huge_range_filter,
    "cycle-map-skip": _huge_cycle,
    "range-map-reduce": _huge_reduce,
    "count-for_each": _huge_for_each,
}


@pytest.mark.parametrize("run", list(HUGE.values()), ids=list(HUGE))
async def test_huge_in_memory_pipeline_is_cancellable_and_does_not_starve(
    run: Callable[[Watchdog], Awaitable[object]],
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    wd = Watchdog(limit=5.0)
    returned: list[object] = []
    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        with trio.move_on_after(0.2) as cs:
            returned.append(await run(wd))
        elapsed = time.monotonic() - t0
        ticks_seen = ticks
        nursery.cancel_scope.cancel()
    assert cs.cancelled_caught
    assert returned == []
    assert elapsed < 1.5, f"cancellation took {elapsed:.2f} s"
    assert ticks_seen >= 10, f"another task ran only {ticks_seen} times in {elapsed:.2f} s"
    assert wd.calls > 0


def _full_channel(kind: str) -> bt.Stream[int]:
    tx, rx = trio.open_memory_channel[int](1000)
    with tx:
        for i in range(1000):
            tx.send_nowait(i)
    return bt.from_channel(receive_side(kind, rx))


EVERY_ITEM: dict[str, Callable[[], bt.Stream[int]]] = {
    "range": lambda: bt.from_iterable(range(10**9)),
    "list": lambda: bt.from_iterable(list(range(1000))),
    "iterator": lambda: bt.from_iterable(iter(range(1000))),
    "count": lambda: bt.from_iterable(itertools.count()),
    "range-map-filter": lambda: (
        bt.from_iterable(range(10**9)).map(lambda x: x).filter(lambda x: x >= 0)
    ),
    "range-skip-take": lambda: bt.from_iterable(range(10**9)).skip(0).take(10**8),
    "producer": lambda: ScriptedProducer.counting().stream(),
    "async-map": lambda: bt.from_iterable(range(10**9)).map(_async_identity),
    "memory-channel": lambda: _full_channel("memory"),
    "generic-channel": lambda: _full_channel("generic"),
}


@pytest.mark.parametrize("cancel_at", [0, 3, 700])
@pytest.mark.parametrize("make", list(EVERY_ITEM.values()), ids=list(EVERY_ITEM))
async def test_every_item_is_a_cancellation_point(
    make: Callable[[], bt.Stream[int]], cancel_at: int
) -> None:
    got: list[int] = []
    after_loop = False
    with trio.fail_after(10), no_leaks():
        with trio.CancelScope() as cs:
            async with make().open() as it:
                async for x in it:
                    got.append(x)
                    if x == cancel_at:
                        cs.cancel()
                after_loop = True
        assert cs.cancelled_caught
    assert not after_loop
    assert got == list(range(cancel_at + 1))


async def test_anext_in_a_cancelled_scope_raises_cancelled_and_loses_nothing() -> None:
    async with bt.from_iterable([0, 1, 2, 3]).map(lambda x: x * 10).open() as it:
        assert await anext(it) == 0
        with trio.CancelScope() as cs:
            cs.cancel()
            await anext(it)
            pytest.fail("anext in a cancelled scope returned")  # pragma: no cover
        assert cs.cancelled_caught
        assert [x async for x in it] == [10, 20, 30]
