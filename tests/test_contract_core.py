"""Contract tests (black-box): the core type, sources, the opened iterator, operators, terminals.

Only the public API of ``beluga_trio`` (docs/design.md, "What is fixed") is used.
"""

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, assert_type, cast

import pytest
import trio
import trio.testing
from _helpers import (
    CHANNEL_KINDS,
    raised_by,
    raising_cleanup,
    receive_side,
    squares_from_worker,
    tasks_living,
    ticking_until,
)

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks

# --------------------------------------------------------------------------------------------
# Cold streams
# --------------------------------------------------------------------------------------------


async def test_building_a_pipeline_runs_nothing() -> None:
    probe = ScriptedProducer.counting(5)
    generator_runs: list[int] = []

    def numbers() -> Iterator[int]:
        generator_runs.append(1)
        yield 1

    tx, rx = trio.open_memory_channel[int](1)
    tx.send_nowait(7)
    before = tasks_living()

    pipeline = probe.stream().map(lambda x: x * 2).filter(lambda x: x > 0).skip(1).take(2)
    from_gen = bt.from_iterable(numbers()).map(lambda x: x + 1)
    from_chan = bt.from_channel(rx).map(lambda x: x + 1)

    await trio.testing.wait_all_tasks_blocked()
    assert probe.opened == 0
    assert probe.started == 0
    assert generator_runs == []
    assert rx.statistics().current_buffer_used == 1  # nothing was received
    assert tasks_living() == before

    # ... and they do run once consumed
    assert await pipeline.collect() == [4, 6]
    assert await from_gen.collect() == [2]
    tx.close()
    assert await from_chan.collect() == [8]


async def test_each_opening_runs_the_producer_from_the_start() -> None:
    probe = ScriptedProducer.counting(5)
    s = probe.stream()
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert probe.opened == 2
    async with s.open() as it:
        assert await anext(it) == 0
        assert await anext(it) == 1
    async with s.open() as it:
        assert await anext(it) == 0
    assert probe.opened == 4
    assert probe.cleanups == 4


def _reiterable_streams() -> list[tuple[str, Callable[[], bt.Stream[int]]]]:
    return [
        ("stream", lambda: ScriptedProducer.counting(4).stream()),
        ("list", lambda: bt.from_iterable([0, 1, 2, 3])),
        ("range", lambda: bt.from_iterable(range(4))),
        ("list-map", lambda: bt.from_iterable([0, 2, 4, 6]).map(lambda x: x // 2)),
    ]


@pytest.mark.parametrize(
    "make", [m for _, m in _reiterable_streams()], ids=[n for n, _ in _reiterable_streams()]
)
async def test_concurrent_openings_are_independent(make: Callable[[], bt.Stream[int]]) -> None:
    s = make()
    with no_leaks():
        async with s.open() as a, s.open() as b:
            assert await anext(a) == 0
            assert await anext(b) == 0
            assert await anext(a) == 1
            assert await anext(a) == 2
            assert await anext(b) == 1
            assert [x async for x in b] == [2, 3]
            assert [x async for x in a] == [3]
    assert await s.collect() == [0, 1, 2, 3]
    assert await s.collect() == [0, 1, 2, 3]


async def test_operators_do_not_change_the_stream_they_are_called_on() -> None:
    base = bt.from_iterable([1, 2, 3, 4])
    base.map(lambda x: x * 10)
    base.filter(lambda x: x > 2)
    base.take(1)
    base.skip(2)
    assert await base.collect() == [1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _gen_obj() -> Iterator[int]:
    yield 1
    yield 2


async def _agen_obj() -> AsyncGenerator[int, None]:
    yield 1
    await trio.lowlevel.checkpoint()
    yield 2


ONE_SHOT: list[Callable[[], bt.Stream[int]]] = [
    lambda: bt.from_iterable(iter([1, 2])),
    lambda: bt.from_iterable(_gen_obj()),
    lambda: bt.from_iterable(_agen_obj()),
]


@pytest.mark.parametrize("make", ONE_SHOT, ids=["iterator", "generator", "async-generator"])
async def test_one_shot_source_raises_when_opened_again(
    make: Callable[[], bt.Stream[int]],
) -> None:
    s = make()
    assert await s.collect() == [1, 2]
    with pytest.raises(bt.StreamConsumedError):
        await s.collect()
    with pytest.raises(bt.StreamConsumedError):
        async with s.open() as it:
            await anext(it)
    # a stream derived from the same one-shot source shares it
    with pytest.raises(bt.StreamConsumedError):
        await s.map(lambda x: x + 1).collect()


async def test_one_shot_source_raises_even_if_first_opening_read_nothing() -> None:
    s = bt.from_iterable(iter([1, 2]))
    async with s.open():
        pass
    with pytest.raises(bt.StreamConsumedError):
        await s.collect()


def test_stream_consumed_error_is_a_runtime_error() -> None:
    assert issubclass(bt.StreamConsumedError, RuntimeError)
    assert issubclass(bt.EmptyStreamError, ValueError)


async def test_from_iterable_accepts_sync_and_async_iterables() -> None:
    assert await bt.from_iterable([3, 1, 2]).collect() == [3, 1, 2]
    assert await bt.from_iterable(range(5)).collect() == [0, 1, 2, 3, 4]
    assert await bt.from_iterable("ab").collect() == ["a", "b"]
    assert await bt.from_iterable(_agen_obj()).collect() == [1, 2]
    assert await bt.from_iterable(list[int]()).collect() == []


@pytest.mark.parametrize("bad", [42, None, 1.5, object()])
def test_from_iterable_rejects_non_iterables(bad: object) -> None:
    with pytest.raises(TypeError):
        bt.from_iterable(cast(Any, bad))


@pytest.mark.parametrize("stop", ["break", "take", "first"])
async def test_from_async_generator_object_is_closed_when_the_stream_is(stop: str) -> None:
    finalized: list[bool] = []

    async def agen() -> AsyncGenerator[int, None]:
        try:
            for i in range(100):
                await trio.lowlevel.checkpoint()
                yield i
        finally:
            finalized.append(True)

    with no_leaks():
        s = bt.from_iterable(agen())
        if stop == "break":
            async with s.open() as it:
                async for x in it:
                    if x == 2:
                        break
        elif stop == "take":
            assert await s.take(3).collect() == [0, 1, 2]
        else:
            assert await s.first() == 0
        assert finalized == [True]


@pytest.mark.parametrize("stop", ["break", "take", "first"])
async def test_from_generator_object_is_closed_when_the_stream_is(stop: str) -> None:
    finalized: list[bool] = []

    def gen() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            finalized.append(True)

    s = bt.from_iterable(gen())
    if stop == "break":
        async with s.open() as it:
            async for x in it:
                if x == 2:
                    break
    elif stop == "take":
        assert await s.map(lambda x: x * 2).take(3).collect() == [0, 2, 4]
    else:
        assert await s.first() == 0
    assert finalized == [True]


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
async def test_from_channel_closes_the_channel_with_the_stream(kind: str) -> None:
    tx, memory_rx = trio.open_memory_channel[int](10)
    for i in range(5):
        tx.send_nowait(i)
    rx = receive_side(kind, memory_rx)
    s = bt.from_channel(rx)
    with no_leaks():
        async with s.open() as it:
            assert await anext(it) == 0
            assert await anext(it) == 1
        with pytest.raises(trio.ClosedResourceError):
            await rx.receive()
    with pytest.raises(trio.BrokenResourceError):  # the senders see it too
        tx.send_nowait(99)
    with pytest.raises(bt.StreamConsumedError):
        await s.collect()
    tx.close()


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
async def test_from_channel_collect_and_first_close_the_channel(kind: str) -> None:
    tx, memory_rx = trio.open_memory_channel[str](10)
    async with tx:
        for c in "abc":
            await tx.send(c)
    rx = receive_side(kind, memory_rx)
    assert await bt.from_channel(rx).map(str.upper).collect() == ["A", "B", "C"]
    with pytest.raises(trio.ClosedResourceError):
        await rx.receive()

    tx2, memory_rx2 = trio.open_memory_channel[str](10)
    for c in "xyz":
        tx2.send_nowait(c)
    rx2 = receive_side(kind, memory_rx2)
    assert await bt.from_channel(rx2).first() == "x"
    with pytest.raises(trio.ClosedResourceError):
        await rx2.receive()
    tx2.close()


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
async def test_from_channel_receives_from_a_feeding_task(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    tx, rx = trio.open_memory_channel[int](0)

    async def feed() -> None:
        async with tx:
            for i in range(5):
                await trio.sleep(1)
                await tx.send(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        assert await bt.from_channel(receive_side(kind, rx)).collect() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# The decorator
# --------------------------------------------------------------------------------------------


def _sync_function() -> int:
    return 1


async def _coroutine_function() -> int:
    await trio.lowlevel.checkpoint()
    return 1


def _sync_generator_function() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    "bad",
    [_sync_function, _coroutine_function, _sync_generator_function, lambda: 1, 42, None],
    ids=["sync-fn", "coroutine-fn", "sync-gen-fn", "lambda", "int", "none"],
)
def test_stream_decorator_rejects_anything_but_async_generator_functions(bad: object) -> None:
    with pytest.raises(TypeError):
        bt.stream(cast(Any, bad))


async def test_stream_decorator_passes_arguments() -> None:
    @bt.stream
    async def repeat(word: str, times: int, *, sep: str = "") -> AsyncGenerator[str, None]:
        for _ in range(times):
            await trio.lowlevel.checkpoint()
            yield word + sep

    assert await repeat("a", 3, sep="!").collect() == ["a!", "a!", "a!"]
    assert await repeat("b", 0).collect() == []


# --------------------------------------------------------------------------------------------
# The opened iterator
# --------------------------------------------------------------------------------------------


async def test_async_for_directly_on_a_stream_raises_type_error_naming_open() -> None:
    s: Any = bt.from_iterable([1, 2, 3])
    with pytest.raises(TypeError, match=r"open\(\)"):
        async for _ in s:
            pass


@pytest.mark.parametrize("consumed_all", [False, True])
@pytest.mark.parametrize("source", ["stream", "list"])
async def test_iterator_is_closed_after_the_block(
    autojump_clock: trio.testing.MockClock, consumed_all: bool, source: str
) -> None:
    s = ScriptedProducer.counting(3).stream() if source == "stream" else bt.from_iterable([0, 1, 2])
    async with s.open() as it:
        assert await anext(it) == 0
        if consumed_all:
            assert [x async for x in it] == [1, 2]
    with trio.fail_after(100), pytest.raises(trio.ClosedResourceError):  # no hang either
        await anext(it)
    with trio.fail_after(100), pytest.raises(trio.ClosedResourceError):
        await anext(it)


async def test_iterator_keeps_raising_stop_after_the_end() -> None:
    async with bt.from_iterable([1]).open() as it:
        assert await anext(it) == 1
        for _ in range(3):
            with pytest.raises(StopAsyncIteration):
                await anext(it)


async def test_second_concurrent_anext_raises_busy(autojump_clock: trio.testing.MockClock) -> None:
    probe = ScriptedProducer.counting(5, delay=1.0)
    got: list[int] = []
    async with probe.stream().open() as it:

        async def first_reader() -> None:
            got.append(await anext(it))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_reader)
            await trio.sleep(0.5)  # first_reader is now blocked in anext
            with pytest.raises(trio.BusyResourceError):
                await anext(it)
        # the failed request disturbed nothing
        assert got == [0]
        assert await anext(it) == 1
        assert [x async for x in it] == [2, 3, 4]


# --------------------------------------------------------------------------------------------
# Lock-step @stream
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 1.0])
async def test_lock_step_exactly_k_started_after_k_received(
    autojump_clock: trio.testing.MockClock, delay: float
) -> None:
    probe = ScriptedProducer.counting(10, delay=delay)
    async with probe.stream().open() as it:
        await trio.sleep(10)
        assert probe.started == 0
        for k in range(1, 6):
            assert await anext(it) == k - 1
            await trio.sleep(10)  # the consumer is not asking
            assert probe.started == k
            assert probe.produced == k


async def test_lock_step_k_plus_one_while_a_request_is_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(10, delay=1.0)

    async def ask(it: AsyncIterator[int], got: list[int]) -> None:
        got.append(await anext(it))

    async with probe.stream().open() as it:
        for k in range(4):
            got: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, it, got)
                await trio.sleep(0.5)  # the request is pending, the producer sleeps
                assert probe.started == k + 1
                assert probe.produced == k
            assert got == [k]
            await trio.sleep(10)
            assert probe.started == k + 1


STAGES: list[Callable[[bt.Stream[int]], bt.Stream[int]]] = [
    lambda s: s.map(lambda x: x * 2),
    lambda s: s.map(_async_double),
    lambda s: s.filter(lambda x: True),
    lambda s: s.skip(0).take(100),
]


@pytest.mark.parametrize("stages", STAGES, ids=["map", "async-map", "filter", "skip-take"])
async def test_lock_step_survives_operators(
    autojump_clock: trio.testing.MockClock,
    stages: Callable[[bt.Stream[int]], bt.Stream[int]],
) -> None:
    probe = ScriptedProducer.counting(10)
    async with stages(probe.stream()).open() as it:
        for k in range(1, 5):
            await anext(it)
            await trio.sleep(10)
            assert probe.started == k


async def test_cancelled_requests_leave_no_credit(autojump_clock: trio.testing.MockClock) -> None:
    probe = ScriptedProducer.counting(6, delay=1.0)
    received: list[int] = []
    async with probe.stream().open() as it:
        received.append(await anext(it))
        for _ in range(5):
            with trio.move_on_after(0.1) as cs:
                received.append(await anext(it))
            assert cs.cancelled_caught
        await trio.sleep(10)  # the consumer is not asking
        assert received == [0]
        assert probe.started <= len(received) + 1
        await trio.sleep(10)
        assert probe.started <= len(received) + 1
        received.extend([x async for x in it])
    assert received == [0, 1, 2, 3, 4, 5]


async def test_requests_cancelled_before_they_start_leave_no_credit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(6)
    received: list[int] = []
    async with probe.stream().open() as it:
        received.append(await anext(it))
        for _ in range(5):
            with trio.CancelScope() as cs:
                cs.cancel()
                received.append(await anext(it))
            assert cs.cancelled_caught
        await trio.sleep(10)
        assert received == [0]
        assert probe.started <= len(received) + 1
        received.extend([x async for x in it])
    assert received == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------------
# Producers holding a cancel scope or a nursery across `yield`
# --------------------------------------------------------------------------------------------


async def test_cancel_scope_in_producer_expires_as_written(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # ticks every second inside `move_on_after(2.5)`, then yields -1 after the scope
    assert await ticking_until(2.5).collect() == [0, 1, -1]


async def test_nursery_in_producer_runs_its_tasks(autojump_clock: trio.testing.MockClock) -> None:
    with no_leaks():
        assert await squares_from_worker(4).collect() == [0, 1, 4, 9]
        assert await squares_from_worker(4).take(2).collect() == [0, 1]
        assert await squares_from_worker(4).first() == 0


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------


async def _async_double(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x * 2


async def _async_is_odd(x: int) -> bool:
    await trio.lowlevel.checkpoint()
    return x % 2 == 1


async def test_map_sync_and_async() -> None:
    s = bt.from_iterable(range(5))
    assert await s.map(lambda x: x * 2).collect() == [0, 2, 4, 6, 8]
    assert await s.map(_async_double).collect() == [0, 2, 4, 6, 8]
    assert await s.map(str).map(lambda t: t + "!").collect() == ["0!", "1!", "2!", "3!", "4!"]
    assert await bt.pipe(s, _async_double).collect() == [0, 2, 4, 6, 8]
    assert await bt.pipe(s, str).collect() == ["0", "1", "2", "3", "4"]


async def test_async_map_fn_really_runs_asynchronously(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(x: int) -> int:
        await trio.sleep(1)
        return x + 100

    start = trio.current_time()
    assert await ScriptedProducer.counting(3).stream().map(slow).collect() == [100, 101, 102]
    assert trio.current_time() - start == pytest.approx(3)


async def test_filter_sync_and_async() -> None:
    s = bt.from_iterable(range(7))
    assert await s.filter(lambda x: x % 2 == 0).collect() == [0, 2, 4, 6]
    assert await s.filter(_async_is_odd).collect() == [1, 3, 5]
    assert await s.filter(lambda x: False).collect() == []
    assert await ScriptedProducer.counting(6).stream().filter(_async_is_odd).map(
        _async_double
    ).collect() == [
        2,
        6,
        10,
    ]


async def test_take_and_skip() -> None:
    s = bt.from_iterable(range(10))
    assert await s.take(3).collect() == [0, 1, 2]
    assert await s.take(0).collect() == []
    assert await s.take(100).collect() == list(range(10))
    assert await s.skip(3).collect() == list(range(3, 10))
    assert await s.skip(0).collect() == list(range(10))
    assert await s.skip(100).collect() == []
    assert await s.skip(2).take(3).collect() == [2, 3, 4]
    assert await s.take(3).skip(2).collect() == [2]
    assert await ScriptedProducer.counting(10).stream().skip(8).collect() == [8, 9]


@pytest.mark.parametrize("op", ["take", "skip"])
def test_take_skip_validate_n(op: str) -> None:
    s = bt.from_iterable([1, 2, 3])
    method: Callable[[Any], bt.Stream[int]] = s.take if op == "take" else s.skip
    with pytest.raises(ValueError):  # noqa: PT011 -- the contract only names the type
        method(-1)
    for bad in (2.0, "3", None):
        with pytest.raises(TypeError):
            method(cast(Any, bad))


async def test_take_closes_upstream_when_it_has_n_items() -> None:
    probe = ScriptedProducer.counting()
    finalized_when_received: list[int] = []
    with no_leaks():
        async with probe.stream().take(3).open() as it:
            received = [await anext(it) for _ in range(3)]
            # checked right when the 3rd item arrived, before asking for more
            finalized_when_received.append(probe.cleanups)
            with pytest.raises(StopAsyncIteration):
                await anext(it)
        assert received == [0, 1, 2]
        assert finalized_when_received == [1]
    assert probe.started == 3


async def test_take_zero_never_starts_the_producer() -> None:
    probe = ScriptedProducer.counting(10)
    assert await probe.stream().take(0).collect() == []
    async with probe.stream().take(0).open() as it:
        with pytest.raises(StopAsyncIteration):
            await anext(it)
    assert probe.opened == 0


async def test_first_closes_the_producer_at_once() -> None:
    endless, five = ScriptedProducer.counting(), ScriptedProducer.counting(5)
    with no_leaks():
        assert await endless.stream().first() == 0
        assert endless.cleanups == 1
        assert endless.started == 1
        assert await five.stream().skip(2).first() == 2
        assert five.cleanups == 1


async def test_last_and_invoke() -> None:
    assert await bt.from_iterable([4, 5, 6]).last() == 6
    assert await bt.invoke(bt.from_iterable([4, 5, 6])) == 6
    probe = ScriptedProducer.counting(4)
    assert await probe.stream().map(_async_double).last() == 6
    assert probe.cleanups == 1


TERMINALS: list[Callable[[bt.Stream[int]], Awaitable[int]]] = [
    lambda s: s.first(),
    lambda s: s.last(),
    bt.invoke,
]
EMPTY: list[Callable[[], bt.Stream[int]]] = [
    lambda: bt.from_iterable(list[int]()),
    lambda: ScriptedProducer.counting(0).stream(),
    lambda: bt.from_iterable(range(10)).filter(lambda x: x > 100),
    lambda: bt.from_iterable(range(10)).skip(10),
]


@pytest.mark.parametrize("terminal", TERMINALS, ids=["first", "last", "invoke"])
@pytest.mark.parametrize("empty", EMPTY, ids=["list", "stream", "filtered", "skipped"])
async def test_empty_stream_error(
    terminal: Callable[[bt.Stream[int]], Awaitable[int]],
    empty: Callable[[], bt.Stream[int]],
) -> None:
    with pytest.raises(bt.EmptyStreamError):
        await terminal(empty())


async def test_reduce_sync_and_async() -> None:
    async def async_add(acc: str, x: int) -> str:
        await trio.lowlevel.checkpoint()
        return acc + str(x)

    s = bt.from_iterable([1, 2, 3])
    assert await s.reduce(lambda acc, x: acc * 10 + x, 0) == 123
    assert await s.reduce(async_add, ">") == ">123"
    assert await bt.from_iterable(list[int]()).reduce(lambda acc, x: acc + x, 42) == 42


async def test_for_each_sync_and_async() -> None:
    seen: list[int] = []

    async def async_record(x: int) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(-x)

    s = ScriptedProducer.counting(4).stream()
    for_each: Callable[[Callable[[int], object]], Awaitable[object]] = s.for_each
    assert await for_each(seen.append) is None
    assert seen == [0, 1, 2, 3]
    seen.clear()
    await s.for_each(async_record)
    assert seen == [0, -1, -2, -3]


async def test_collect_and_collect_result_functions() -> None:
    s = bt.from_iterable("xyz")
    assert await bt.collect(s) == ["x", "y", "z"]
    result = await bt.collect_result(s)
    assert isinstance(result, bt.CollectResult)
    assert result.items == ["x", "y", "z"]
    assert result.error is None
    items, error = await s.collect_result()
    assert items == ["x", "y", "z"]
    assert error is None


async def test_collect_result_returns_items_before_the_error_and_the_error() -> None:
    err = ValueError("boom")

    def explode_on_3(x: int) -> int:
        if x == 3:
            raise err
        return x

    result = await ScriptedProducer.counting(10).stream().map(explode_on_3).collect_result()
    assert result.items == [0, 1, 2]
    assert result.error is err
    result = await bt.collect_result(bt.from_iterable(range(10)).map(explode_on_3))
    assert result.items == [0, 1, 2]
    assert result.error is err


async def test_collect_result_reports_a_cleanup_error_with_the_items() -> None:
    err = ValueError("cleanup")
    result = await raising_cleanup(err, awaiting=True).collect_result()
    assert result.items == [0, 1, 2, 3, 4]
    assert result.error is err
    result = await raising_cleanup(err, awaiting=False).take(2).collect_result()
    assert result.items == [0, 1]
    assert result.error is err


async def test_static_types() -> None:
    # checked by mypy and pyright (assert_type is a no-op at run time)
    s = bt.from_iterable([1, 2])
    assert_type(s, bt.Stream[int])
    assert_type(s.map(str), bt.Stream[str])
    assert_type(s.map(_async_double), bt.Stream[int])
    assert_type(bt.pipe(s, str), bt.Stream[str])
    assert_type(s.filter(_async_is_odd).take(1).skip(0), bt.Stream[int])
    assert_type(await s.map(str).collect(), list[str])
    assert_type(await s.first(), int)
    assert_type(await s.last(), int)
    assert_type(await bt.invoke(s), int)
    assert_type(await s.reduce(lambda acc, x: acc + str(x), ""), str)
    result = await s.collect_result()
    assert_type(result, bt.CollectResult[int])
    assert_type(result.items, list[int])
    assert_type(result.error, Exception | None)
    assert result == ([1, 2], None)


# --------------------------------------------------------------------------------------------
# A sync fn that returns an awaitable
# --------------------------------------------------------------------------------------------


async def _add_one(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + 1


def _close_all(coros: list[Coroutine[Any, Any, int]]) -> bool:
    """Close the coroutines (so that no warning escapes); return whether all were closed."""
    were_closed = all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    for c in coros:
        c.close()
    return were_closed


async def test_sync_map_fn_returning_an_awaitable_is_a_type_error() -> None:
    made: list[Coroutine[Any, Any, int]] = []

    def sync_returning_coroutine(x: int) -> Coroutine[Any, Any, int]:
        c = _add_one(x)
        made.append(c)
        return c

    try:
        exc = await raised_by(
            lambda: bt.from_iterable([1, 2, 3]).map(sync_returning_coroutine).collect()
        )
    finally:
        _close_all(made)
    assert isinstance(exc, TypeError), repr(exc)
    assert "async def" in str(exc)
    assert 1 <= len(made) <= 3  # the first of them fails the stream; none is delivered


async def test_sync_map_fn_returning_an_awaitable_is_closed_by_the_library() -> None:
    made: list[Coroutine[Any, Any, int]] = []

    def sync_returning_coroutine(x: int) -> Coroutine[Any, Any, int]:
        c = _add_one(x)
        made.append(c)
        return c

    with pytest.raises(TypeError):
        await bt.from_iterable([1, 2, 3]).map(sync_returning_coroutine).collect()
    assert made
    assert _close_all(made), "the coroutine object was left unclosed (never-awaited warning)"
