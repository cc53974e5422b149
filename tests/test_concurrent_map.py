"""Tests of ``s.map(fn, concurrency=n, ordered=True, window=None)`` (docs/design.md, "What is
fixed"; issue 3): at most n calls in flight, input or completion order, a slow item does not idle
the other slots (aiostream #89, docs/design.md), errors cancel the calls in flight and arrive as
themselves, a shared ``trio.CapacityLimiter`` bounds the sum, leaving and cancellation.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import Probe, counting, drain_with_timeouts, no_task_leak, raised_by, tasks_living
from _stage_helpers import (
    ERRORS,
    ExitState,
    InFlight,
    all_blocked,
    cancelled_while_consuming,
    failing,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt


def sleeping(flight: InFlight, seconds: Callable[[int], float]) -> Callable[[int], Awaitable[int]]:
    """An async fn that sleeps ``seconds(x)`` and returns ``10 * x``, counted in ``flight``."""

    async def fn(x: int) -> int:
        with flight.call():
            await trio.sleep(seconds(x))
        return 10 * x

    return fn


# --------------------------------------------------------------------------------------------
# Items, order, the bound on calls in flight
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 2, 3, 8])
async def test_ordered_results_come_in_input_order_with_at_most_n_in_flight(
    autojump_clock: trio.testing.MockClock, concurrency: int
) -> None:
    flight = InFlight()
    delays = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]
    probe = Probe()
    s = counting(probe, len(delays)).map(
        sleeping(flight, lambda x: delays[x]), concurrency=concurrency
    )
    with no_task_leak():
        got = await s.collect()
    assert got == [10 * i for i in range(len(delays))]
    assert flight.peak == concurrency, "never more, and the slots are used"
    assert flight.calls == flight.finished == len(delays)
    assert probe.finalized == 1


async def test_unordered_results_come_in_completion_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight = InFlight()
    delays = {0: 3.0, 1: 1.0, 2: 2.0, 3: 0.5, 4: 0.1}
    s = bt.from_iterable(range(5)).map(
        sleeping(flight, lambda x: delays[x]), concurrency=3, ordered=False
    )
    t0 = trio.current_time()
    with no_task_leak():
        async with s.open() as it:
            arrivals: list[tuple[int, float]] = [(x, trio.current_time() - t0) async for x in it]
    # 0, 1, 2 start at 0; 1 ends at 1 -> 3 starts, ends at 1.5 -> 4 starts, ends at 1.6;
    # 2 ends at 2; 0 ends at 3
    assert arrivals == [(10, 1.0), (30, 1.5), (40, 1.6), (20, 2.0), (0, 3.0)]
    assert flight.peak == 3


async def test_sync_fn_with_concurrency() -> None:
    with no_task_leak():
        got = await bt.from_iterable(range(1000)).map(lambda x: x * x, concurrency=4).collect()
    assert got == [x * x for x in range(1000)]
    strings = await bt.from_iterable(range(100)).map(str, concurrency=2, ordered=False).collect()
    assert sorted(strings, key=int) == [str(x) for x in range(100)]


async def test_a_concurrent_map_is_cold_and_reopenable() -> None:
    probe = Probe()
    calls = 0

    async def fn(x: int) -> int:
        nonlocal calls
        calls += 1
        await trio.lowlevel.checkpoint()
        return x

    s = counting(probe, 5).map(fn, concurrency=2)
    await all_blocked()
    assert (probe.entered, calls) == (0, 0)
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert (probe.entered, calls) == (2, 10)


@settings(deadline=None, max_examples=50)
@given(
    delays=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]), max_size=25),
    concurrency=st.integers(min_value=1, max_value=6),
    window=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    async_source=st.booleans(),
)
def test_ordered_concurrent_map_equals_sequential_map(
    delays: list[float], concurrency: int, window: int | None, async_source: bool
) -> None:
    async def main() -> None:
        flight = InFlight()
        fn = sleeping(flight, lambda x: delays[x])
        probe = Probe()
        source = (
            counting(probe, len(delays)) if async_source else bt.from_iterable(range(len(delays)))
        )
        with no_task_leak():
            ordered = await source.map(fn, concurrency=concurrency, window=window).collect()
            unordered = await source.map(
                fn, concurrency=concurrency, ordered=False, window=window
            ).collect()
        assert ordered == await source.map(fn).collect()
        assert sorted(unordered) == ordered
        assert flight.peak <= concurrency
        assert probe.finalized == probe.entered

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------------------------
# aiostream #89: an ordered map with a task limit stalls every slot behind one slow item
# --------------------------------------------------------------------------------------------


def _head_of_line() -> tuple[Callable[[int], Awaitable[int]], InFlight, list[bool]]:
    flight = InFlight()
    item0_running = [False]
    full_while_item0_runs = [False]

    async def fn(x: int) -> int:
        with flight.call():
            if x == 0:
                item0_running[0] = True
            elif item0_running[0] and flight.now == 3:
                full_while_item0_runs[0] = True
            await trio.sleep(5 if x == 0 else 1)
            if x == 0:
                item0_running[0] = False
        return x

    return fn, flight, full_while_item0_runs


async def test_a_slow_first_item_does_not_idle_the_other_slots(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Items 0..7, item 0 takes 5 s and the others 1 s, concurrency 3, ordered, default window
    (2n = 6). t=0: 0, 1, 2 start; t=1: 3, 4; t=2: 5 (6 items started, none delivered: the
    window is full); t=5: 0 ends, 0..5 are delivered, 6 and 7 start; t=6: done. Six seconds.
    An implementation that stalls behind item 0 needs 5 + 1 + 1 = 7 at best (aiostream #89
    needs 5 + ceil(7 / 3) = 8)."""
    fn, flight, full_while_item0_runs = _head_of_line()
    t0 = trio.current_time()
    with no_task_leak():
        got = await bt.from_iterable(range(8)).map(fn, concurrency=3).collect()
    assert got == list(range(8))
    assert trio.current_time() - t0 == 6
    assert flight.peak == 3
    assert full_while_item0_runs[0], "the other slots idled while item 0 ran"


async def test_the_window_bounds_how_far_past_a_slow_item_work_goes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same job with ``window=3`` (no room past the slots): 0..2 start at 0, 1 and 2 end
    at 1 and wait for 0; at 5 they are delivered and 3..5 start; 6..7 at 6; done at 7."""
    fn, flight, _ = _head_of_line()
    t0 = trio.current_time()
    got = await bt.from_iterable(range(8)).map(fn, concurrency=3, window=3).collect()
    assert got == list(range(8))
    assert trio.current_time() - t0 == 7
    assert flight.peak == 3


async def test_a_slow_item_does_not_stall_an_unordered_map(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fn, flight, _ = _head_of_line()
    t0 = trio.current_time()
    async with bt.from_iterable(range(8)).map(fn, concurrency=3, ordered=False).open() as it:
        arrivals: list[tuple[int, float]] = [(x, trio.current_time() - t0) async for x in it]
    # the two free slots run 1..7 in pairs: 1,2 at 1; 3,4 at 2; 5,6 at 3; 7 at 4; 0 at 5
    assert [t for _, t in arrivals] == [1, 1, 2, 2, 3, 3, 4, 5]
    assert arrivals[-1] == (0, 5)
    assert flight.peak == 3


# --------------------------------------------------------------------------------------------
# Memory bound: a consumer that does not read stops the feeding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 10])
async def test_read_ahead_is_bounded_when_the_consumer_does_not_read(concurrency: int) -> None:
    probe = Probe()
    flight = InFlight()

    async def fn(x: int) -> int:
        with flight.call():
            await trio.lowlevel.checkpoint()
        return x

    with no_task_leak():
        async with counting(probe).map(fn, concurrency=concurrency).open() as it:
            await all_blocked()
            assert probe.started <= 2 * concurrency + 1
            assert flight.calls <= 2 * concurrency
            assert await anext(it) == 0
            await all_blocked()
            assert probe.started <= 2 * concurrency + 2
    assert probe.finalized == 1


# --------------------------------------------------------------------------------------------
# Shared limiter (Beluga's FlowController)
# --------------------------------------------------------------------------------------------


async def test_a_shared_limiter_bounds_the_sum_of_calls_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = trio.CapacityLimiter(3)
    flight = InFlight()  # shared by both stages
    fn = sleeping(flight, lambda x: 1 + x % 3)
    a = bt.from_iterable(range(20)).map(fn, concurrency=limiter)
    b = bt.from_iterable(range(20)).map(fn, concurrency=limiter, ordered=False)
    results: dict[str, list[int]] = {}

    async def run(name: str, s: bt.Stream[int]) -> None:
        results[name] = await s.collect()

    with no_task_leak():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", a)
            nursery.start_soon(run, "b", b)
    assert results["a"] == [10 * i for i in range(20)]
    assert sorted(results["b"]) == results["a"]
    assert flight.peak == 3, "the two stages together exceeded the shared limit"
    assert limiter.borrowed_tokens == 0


async def test_a_shared_limiter_within_one_pipeline(autojump_clock: trio.testing.MockClock) -> None:
    limiter = trio.CapacityLimiter(2)
    flight = InFlight()
    fn = sleeping(flight, lambda x: 1)

    async def back(x: int) -> int:
        return await fn(x // 10)

    s = bt.merge(
        bt.from_iterable(range(10)).map(fn, concurrency=limiter),
        bt.from_iterable(range(10)).map(fn, concurrency=limiter).map(back, concurrency=limiter),
    )
    with no_task_leak(), trio.fail_after(1000):
        got = await s.collect()
    assert len(got) == 20
    assert flight.peak <= 2


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_must_be_at_least_one(concurrency: int) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        bt.from_iterable([1]).map(str, concurrency=concurrency)


@pytest.mark.parametrize("concurrency", [1.5, "2", True])
def test_concurrency_must_be_an_int_or_a_limiter(concurrency: Any) -> None:
    with pytest.raises(TypeError, match="concurrency"):
        bt.from_iterable([1]).map(str, concurrency=concurrency)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_an_error_in_fn_cancels_the_calls_in_flight_and_arrives_as_itself(
    autojump_clock: trio.testing.MockClock, kind: str, ordered: bool
) -> None:
    err = ERRORS[kind]()
    flight = InFlight()
    probe = Probe()

    async def fn(x: int) -> int:
        with flight.call():
            if x == 3:
                await trio.sleep(1.5)
                raise err
            await trio.sleep(1000 if x > 3 else 1)
        return x

    got: list[int] = []

    async def consume() -> None:
        with trio.fail_after(100):  # the endless source must be stopped, not run for ever
            async with counting(probe).map(fn, concurrency=4, ordered=ordered).open() as it:
                async for x in it:
                    got.append(x)  # noqa: PERF401 - keeps what arrived before the error

    t0 = trio.current_time()
    state = ExitState()
    before = tasks_living()
    try:
        exc = await raised_by(consume)
    finally:
        state.record([probe])
    assert exc is err
    assert trio.current_time() - t0 == 1.5, "the calls in flight were waited for"
    assert flight.cancelled >= 3, "the calls in flight were not cancelled"
    assert flight.now == 0
    assert state.finalized == [1]
    assert state.tasks == before
    assert got == [0, 1, 2] if ordered else sorted(got) == [0, 1, 2]


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_an_upstream_error_arrives_as_itself_after_the_results_before_it(
    kind: str,
) -> None:
    err = ERRORS[kind]()
    flight = InFlight()
    fn = sleeping(flight, lambda x: 0)
    got: list[int] = []

    async def consume() -> None:
        async with failing(Probe(), 6, err).map(fn, concurrency=3).open() as it:
            async for x in it:
                got.append(x)  # noqa: PERF401 - keeps what arrived before the error

    with no_task_leak():
        assert await raised_by(consume) is err
    expected = [0, 10, 20, 30, 40, 50]
    if isinstance(err, KeyboardInterrupt | SystemExit):
        assert got == expected[: len(got)]  # an interrupt ends the block at once
    else:
        assert got == expected


async def test_a_sync_fn_error_arrives_as_itself() -> None:
    err = ExceptionGroup("own", [ValueError()])

    def fn(x: int) -> int:
        if x == 50:
            raise err
        return x

    with no_task_leak():
        res = await bt.from_iterable(range(100)).map(fn, concurrency=4).collect_result()
    assert res.error is err
    assert res.items == list(range(50))


async def test_a_sync_fn_returning_an_awaitable_is_refused() -> None:
    async def coro(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x

    def looks_sync(x: int) -> Any:
        return coro(x)

    with pytest.raises(TypeError):
        await bt.from_iterable(range(3)).map(looks_sync, concurrency=2).collect()


# --------------------------------------------------------------------------------------------
# Leaving and cancellation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_breaking_out_cancels_the_calls_in_flight_and_stops_the_producer(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    flight = InFlight()
    probe = Probe()
    fn = sleeping(flight, lambda x: 1 + x % 4)
    state = ExitState()
    before = tasks_living()
    got: list[int] = []
    try:
        async with counting(probe).map(fn, concurrency=4, ordered=ordered).open() as it:
            async for x in it:
                got.append(x)
                if len(got) == 5:
                    break
    finally:
        state.record([probe])
        in_flight_at_exit = flight.now
    assert state.finalized == [1], "the producer's finally had not run when the block ended"
    assert state.tasks == before, "a task outlived the block"
    assert in_flight_at_exit == 0
    assert flight.cancelled >= 1
    if ordered:
        assert got == [0, 10, 20, 30, 40]


async def test_take_and_first_stop_everything() -> None:
    probe = Probe()
    flight = InFlight()

    async def fn(x: int) -> int:
        with flight.call():
            await trio.lowlevel.checkpoint()
        return x

    with no_task_leak():
        assert await counting(probe).map(fn, concurrency=5).take(12).collect() == list(range(12))
        assert await counting(probe).map(fn, concurrency=5).first() == 0
    assert probe.finalized == 2
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("by", ["cancel", "deadline"])
async def test_external_cancellation_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, by: str, ordered: bool
) -> None:
    probe = Probe()
    flight = InFlight()
    fn = sleeping(flight, lambda x: 1)

    def make() -> bt.Stream[int]:
        return counting(probe, 30).map(fn, concurrency=3, ordered=ordered)

    with no_task_leak():
        if by == "cancel":
            got, after_loop, caught = await cancelled_while_consuming(make, cancel_after=4)
        else:
            got, after_loop, caught = await cancelled_while_consuming(make, deadline=2.5)
    assert not after_loop
    assert caught
    assert len(got) == (4 if by == "cancel" else 6)
    assert probe.finalized == 1
    assert flight.now == 0


async def test_cancellation_while_every_call_is_done_is_not_a_clean_end() -> None:
    after_loop = False
    with trio.CancelScope() as cs:
        async with bt.from_iterable(range(3)).map(str, concurrency=3).open() as it:
            await all_blocked()
            cs.cancel()
            async for _ in it:
                pass  # pragma: no cover
            after_loop = True
    assert cs.cancelled_caught
    assert not after_loop


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_shielded_consumer_does_not_see_a_clean_end_when_the_calls_are_cancelled(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    probe = Probe()
    flight = InFlight()
    fn = sleeping(flight, lambda x: 1)
    after_loop = False
    with trio.CancelScope() as outer:
        async with counting(probe, 20).map(fn, concurrency=3, ordered=ordered).open() as it:
            with trio.CancelScope(shield=True):
                try:
                    async for x in it:
                        if x == 20:
                            outer.cancel()
                    after_loop = True
                except trio.BrokenResourceError:
                    pass  # an error that says the stream cannot go on: fine
    assert not after_loop, "the map looked finished"
    assert probe.finalized == 1
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_timed_out_anext_loses_no_item(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    delays = [0.5, 2, 0.1, 3, 0, 0, 1.5, 4, 0.2, 2, 0.7, 1.1]
    flight = InFlight()
    fn = sleeping(flight, lambda x: delays[x])
    with no_task_leak():
        async with (
            counting(Probe(), len(delays)).map(fn, concurrency=2, ordered=ordered).open() as it
        ):
            got, cancelled = await drain_with_timeouts(it, 0.6)
    assert cancelled >= 3
    if ordered:
        assert got == [10 * i for i in range(len(delays))]
    else:
        assert sorted(got) == [10 * i for i in range(len(delays))]
