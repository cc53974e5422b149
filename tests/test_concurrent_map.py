"""Tests of ``s.map(fn, concurrency=n, ordered=True, window=None)`` (docs/design.md, "What is
fixed"; issue 3): at most n calls in flight, input or completion order, a slow item does not idle
the other slots (aiostream #89, docs/design.md), errors cancel the calls in flight and arrive as
themselves, a shared ``trio.CapacityLimiter`` bounds the sum, leaving and cancellation.
"""

from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import pytest
import trio
import trio.testing
from _helpers import drain_with_timeouts, raised_by, tasks_living
from _stage_helpers import ERRORS, ExitState, InFlight, all_blocked, cancelled_while_consuming
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks


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
    probe = ScriptedProducer.counting(len(delays))
    s = probe.stream().map(sleeping(flight, lambda x: delays[x]), concurrency=concurrency)
    with no_leaks():
        got = await s.collect()
    assert got == [10 * i for i in range(len(delays))]
    assert flight.peak == concurrency, "never more, and the slots are used"
    assert flight.calls == flight.finished == len(delays)
    assert probe.cleanups == 1


async def test_unordered_results_come_in_completion_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight = InFlight()
    delays = {0: 3.0, 1: 1.0, 2: 2.0, 3: 0.5, 4: 0.1}
    s = bt.from_iterable(range(5)).map(
        sleeping(flight, lambda x: delays[x]), concurrency=3, ordered=False
    )
    t0 = trio.current_time()
    with no_leaks():
        async with s.open() as it:
            arrivals: list[tuple[int, float]] = [(x, trio.current_time() - t0) async for x in it]
    # 0, 1, 2 start at 0; 1 ends at 1 -> 3 starts, ends at 1.5 -> 4 starts, ends at 1.6;
    # 2 ends at 2; 0 ends at 3
    assert arrivals == [(10, 1.0), (30, 1.5), (40, 1.6), (20, 2.0), (0, 3.0)]
    assert flight.peak == 3


async def test_sync_fn_with_concurrency() -> None:
    with no_leaks():
        got = await bt.from_iterable(range(1000)).map(lambda x: x * x, concurrency=4).collect()
    assert got == [x * x for x in range(1000)]
    strings = await bt.from_iterable(range(100)).map(str, concurrency=2, ordered=False).collect()
    assert sorted(strings, key=int) == [str(x) for x in range(100)]


async def test_a_concurrent_map_is_cold_and_reopenable() -> None:
    probe = ScriptedProducer.counting(5)
    calls = 0

    async def fn(x: int) -> int:
        nonlocal calls
        calls += 1
        await trio.lowlevel.checkpoint()
        return x

    s = probe.stream().map(fn, concurrency=2)
    await all_blocked()
    assert (probe.opened, calls) == (0, 0)
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert await s.collect() == [0, 1, 2, 3, 4]
    assert (probe.opened, calls) == (2, 10)


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
        probe = ScriptedProducer.counting(len(delays))
        source = probe.stream() if async_source else bt.from_iterable(range(len(delays)))
        with no_leaks():
            ordered = await source.map(fn, concurrency=concurrency, window=window).collect()
            unordered = await source.map(
                fn, concurrency=concurrency, ordered=False, window=window
            ).collect()
        assert ordered == await source.map(fn).collect()
        assert sorted(unordered) == ordered
        assert flight.peak <= concurrency
        assert probe.cleanups == probe.opened

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
    with no_leaks():
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
    probe = ScriptedProducer.counting()
    flight = InFlight()

    async def fn(x: int) -> int:
        with flight.call():
            await trio.lowlevel.checkpoint()
        return x

    with no_leaks():
        async with probe.stream().map(fn, concurrency=concurrency).open() as it:
            await all_blocked()
            assert probe.started <= 2 * concurrency + 1
            assert flight.calls <= 2 * concurrency
            assert await anext(it) == 0
            await all_blocked()
            assert probe.started <= 2 * concurrency + 2
    assert probe.cleanups == 1


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

    with no_leaks():
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
    with no_leaks(), trio.fail_after(1000):
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
    probe = ScriptedProducer.counting()

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
            async with probe.stream().map(fn, concurrency=4, ordered=ordered).open() as it:
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
        async with (
            ScriptedProducer(range(6), raise_before=6, error=err, cleanup_checkpoints=0)
            .stream()
            .map(fn, concurrency=3)
            .open() as it
        ):
            async for x in it:
                got.append(x)  # noqa: PERF401 - keeps what arrived before the error

    with no_leaks():
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

    with no_leaks():
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
    probe = ScriptedProducer.counting()
    fn = sleeping(flight, lambda x: 1 + x % 4)
    state = ExitState()
    before = tasks_living()
    got: list[int] = []
    try:
        async with probe.stream().map(fn, concurrency=4, ordered=ordered).open() as it:
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
    probe = ScriptedProducer.counting()
    flight = InFlight()

    async def fn(x: int) -> int:
        with flight.call():
            await trio.lowlevel.checkpoint()
        return x

    with no_leaks():
        assert await probe.stream().map(fn, concurrency=5).take(12).collect() == list(range(12))
        assert await probe.stream().map(fn, concurrency=5).first() == 0
    assert probe.cleanups == 2
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("by", ["cancel", "deadline"])
async def test_external_cancellation_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, by: str, ordered: bool
) -> None:
    probe = ScriptedProducer.counting(30)
    flight = InFlight()
    fn = sleeping(flight, lambda x: 1)

    def make() -> bt.Stream[int]:
        return probe.stream().map(fn, concurrency=3, ordered=ordered)

    with no_leaks():
        if by == "cancel":
            got, after_loop, caught = await cancelled_while_consuming(make, cancel_after=4)
        else:
            got, after_loop, caught = await cancelled_while_consuming(make, deadline=2.5)
    assert not after_loop
    assert caught
    assert len(got) == (4 if by == "cancel" else 6)
    assert probe.cleanups == 1
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
    probe = ScriptedProducer.counting(20)
    flight = InFlight()
    fn = sleeping(flight, lambda x: 1)
    after_loop = False
    with trio.CancelScope() as outer:
        async with probe.stream().map(fn, concurrency=3, ordered=ordered).open() as it:
            with trio.CancelScope(shield=True):
                try:
                    async for x in it:
                        if x == 20:
                            outer.cancel()
                    after_loop = True
                except trio.BrokenResourceError:
                    pass  # an error that says the stream cannot go on: fine
    assert not after_loop, "the map looked finished"
    assert probe.cleanups == 1
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_timed_out_anext_loses_no_item(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    delays = [0.5, 2, 0.1, 3, 0, 0, 1.5, 4, 0.2, 2, 0.7, 1.1]
    flight = InFlight()
    fn = sleeping(flight, lambda x: delays[x])
    with no_leaks():
        async with (
            ScriptedProducer.counting(len(delays))
            .stream()
            .map(fn, concurrency=2, ordered=ordered)
            .open() as it
        ):
            got, cancelled = await drain_with_timeouts(it, 0.6)
    assert cancelled >= 3
    if ordered:
        assert got == [10 * i for i in range(len(delays))]
    else:
        assert sorted(got) == [10 * i for i in range(len(delays))]


# --------------------------------------------------------------------------------------------
# Errors are positions (CONTRACT.md guarantee 8; issue 10 case 7)
# --------------------------------------------------------------------------------------------


class FnError(Exception):
    pass


def positional(
    flight: InFlight, delays: dict[int, float], fails: dict[int, float], default: float = 1
) -> Callable[[int], Awaitable[int]]:
    """An async fn: item x sleeps ``delays.get(x, default)`` and returns ``x``, or, for x in
    ``fails``, sleeps ``fails[x]`` and raises ``FnError(x)``."""

    async def fn(x: int) -> int:
        with flight.call():
            if x in fails:
                await trio.sleep(fails[x])
                raise FnError(x)
            await trio.sleep(delays.get(x, default))
        return x

    return fn


async def test_ordered_an_error_comes_after_every_earlier_item_still_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Item 2 fails at t=1 while 0 and 1 run until t=5: they run to completion and are
    delivered first; item 3 (running) is cancelled, and no item after it is started."""
    flight = InFlight()
    fn = positional(flight, {0: 5, 1: 5, 3: 100}, {2: 1})
    t0 = trio.current_time()
    with no_leaks():
        res = await bt.from_iterable(range(10)).map(fn, concurrency=4).collect_result()
    assert res.items == [0, 1]
    assert isinstance(res.error, FnError)
    assert res.error.args == (2,)
    assert trio.current_time() - t0 == 5
    assert flight.calls == 4, "an item was started after the error was known"
    assert flight.finished == 2
    assert flight.cancelled == 1


async def test_ordered_no_item_starts_once_an_error_is_known(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight = InFlight()
    fn = positional(flight, {0: 10}, {1: 0.45}, default=0.1)
    res = await bt.from_iterable(range(50)).map(fn, concurrency=3, window=50).collect_result()
    assert res.items == [0]
    assert isinstance(res.error, FnError)
    # 0, 1, 2 start at 0; 2 ends at 0.1, 3 starts ... until 1 fails at 0.45: items 2..6
    assert flight.calls == 7
    assert flight.now == 0


@pytest.mark.parametrize("k", [1, 2, 3])
async def test_ordered_take_before_the_error_never_sees_it(
    autojump_clock: trio.testing.MockClock, k: int
) -> None:
    """The error of item 3 is known long before items 0..2 finish; take(k <= 3) stops
    before its position, so it gets its items and no error."""
    flight = InFlight()
    fn = positional(flight, {0: 5, 1: 6, 2: 7}, {3: 0.1})
    with no_leaks():
        got = await bt.from_iterable(range(10)).map(fn, concurrency=4).take(k).collect()
    assert got == list(range(k))
    assert flight.now == 0


async def test_ordered_an_earlier_error_ends_the_stream_before_a_later_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Item 3 fails first (t=1), item 1 later (t=2): the stream is item 0, then item 1's
    error; a sequential map would never have called fn on item 3."""
    flight = InFlight()
    fn = positional(flight, {0: 0.5, 2: 10}, {1: 2, 3: 1})
    res = await bt.from_iterable(range(10)).map(fn, concurrency=4).collect_result()
    assert res.items == [0]
    assert isinstance(res.error, FnError)
    assert res.error.args == (1,)
    assert flight.now == 0


@settings(deadline=None, max_examples=60)
@given(
    delays=st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 7.0]), min_size=1, max_size=12),
    data=st.data(),
    concurrency=st.integers(min_value=1, max_value=6),
    window=st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
)
def test_ordered_whether_take_k_sees_an_error_never_depends_on_timing(
    delays: list[float],
    data: st.DataObject,
    concurrency: int,
    window: int | None,
) -> None:
    """Item ``bad`` fails after its delay; every other item returns after its own. With any
    delays, ``take(k)`` gives items ``0..k-1`` when ``k <= bad``, else items ``0..bad-1``
    and the error."""
    bad = data.draw(st.integers(min_value=0, max_value=len(delays) - 1), label="bad")
    k = data.draw(st.integers(min_value=1, max_value=len(delays) + 1), label="k")
    err = FnError("bad")

    async def fn(x: int) -> int:
        await trio.sleep(delays[x])
        if x == bad:
            raise err
        return x

    async def main() -> None:
        s = bt.from_iterable(range(len(delays))).map(fn, concurrency=concurrency, window=window)
        with no_leaks():
            res = await s.take(k).collect_result()
        if k <= bad:
            assert res.items == list(range(k))
            assert res.error is None
        else:
            assert res.items == list(range(bad))
            assert res.error is err

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_unordered_an_error_arrives_when_it_happens_and_cancels_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flight = InFlight()
    fn = positional(flight, {0: 0.5, 1: 5, 3: 0.2}, {2: 1})
    t0 = trio.current_time()
    res = await bt.from_iterable(range(10)).map(fn, concurrency=4, ordered=False).collect_result()
    # 0..3 start at 0; 3 ends at 0.2 (4 starts), 0 at 0.5 (5 starts); 2 fails at 1, while
    # 1, 4 and 5 run: they are cancelled, and nothing more starts
    assert res.items == [3, 0]
    assert isinstance(res.error, FnError)
    assert trio.current_time() - t0 == 1
    assert (flight.calls, flight.cancelled) == (6, 3)
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
async def test_an_upstream_error_comes_after_every_call_started_before_it(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    """The producer fails after 3 items, at once; the calls for them take 1-3 s and all
    run to completion before the error is raised."""
    err = FnError("upstream")
    flight = InFlight()
    fn = sleeping(flight, lambda x: 3 - x)
    t0 = trio.current_time()
    with no_leaks():
        res = (
            await ScriptedProducer(range(3), raise_before=3, error=err, cleanup_checkpoints=0)
            .stream()
            .map(fn, concurrency=5, ordered=ordered)
            .collect_result()
        )
    assert res.error is err
    assert trio.current_time() - t0 == 3
    assert sorted(res.items) == [0, 10, 20]
    if ordered:
        assert res.items == [0, 10, 20]
    assert flight.finished == 3


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_call_that_fails_while_it_is_stopped_is_a_cleanup_error(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    """Item 2's error stops item 3, whose cleanup raises: that error is not the stream's and
    is not lost: it comes with the stream's error when the opening closes."""
    cleanup = KeyError("cleanup")

    async def fn(x: int) -> int:
        if x == 2:
            await trio.sleep(1)
            raise FnError(2)
        if x == 3:
            try:
                await trio.sleep(100)
            finally:
                raise cleanup
        await trio.sleep(0.5)
        return x

    exc = await raised_by(
        lambda: bt.from_iterable(range(4)).map(fn, concurrency=4, ordered=ordered).collect()
    )
    assert isinstance(exc, BaseExceptionGroup)
    members = cast("BaseExceptionGroup[BaseException]", exc).exceptions
    assert [type(e) for e in members] == [FnError, KeyError]
    assert members[1] is cleanup


# --------------------------------------------------------------------------------------------
# Exactly-once calls (guarantee 7), PEP 479 (guarantee 10), late awaitables
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_consumer_polling_with_short_timeouts_never_reruns_a_call(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    calls: dict[int, int] = {}

    async def fn(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        await trio.sleep(1 + x % 3)
        return x

    got: list[int] = []
    timeouts = 0
    with no_leaks():
        async with bt.from_iterable(range(12)).map(fn, concurrency=2, ordered=ordered).open() as it:
            while len(got) < 12:
                with trio.move_on_after(0.3) as cs:
                    got.append(await anext(it))
                timeouts += cs.cancelled_caught
    assert timeouts > 10, "the consumer did poll with timeouts shorter than a call"
    assert sorted(got) == list(range(12))
    if ordered:
        assert got == list(range(12))
    assert calls == dict.fromkeys(range(12), 1)


@pytest.mark.parametrize("sync", [True, False])
@pytest.mark.parametrize("kind", [StopIteration, StopAsyncIteration])
async def test_stop_iteration_from_fn_fails_the_stream_instead_of_ending_it(
    kind: type[Exception], sync: bool
) -> None:
    original = kind("from fn")

    def sync_fn(x: int) -> int:
        if x == 3:
            raise original
        return x

    async def async_fn(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return sync_fn(x)

    fn: Callable[[int], Any] = sync_fn if sync else async_fn
    with no_leaks():
        res = await bt.from_iterable(range(6)).map(fn, concurrency=2).collect_result()
    assert res.items == [0, 1, 2]
    assert type(res.error) is RuntimeError
    assert res.error.__cause__ is original


@pytest.mark.parametrize("from_item", [0, 3])
async def test_a_sync_fn_returning_an_awaitable_at_any_item_is_refused(from_item: int) -> None:
    async def coro(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x

    def sometimes_async(x: int) -> Any:
        return coro(x) if x >= from_item else x

    res = await bt.from_iterable(range(6)).map(sometimes_async, concurrency=2).collect_result()
    assert res.items == list(range(from_item))
    assert isinstance(res.error, TypeError)
    assert "sometimes_async" in str(res.error)


async def test_keyboard_interrupt_from_a_call_is_not_grouped_with_a_concurrent_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Item 1 fails at t=1; item 0, before it, runs on and raises KeyboardInterrupt at t=2."""

    async def fn(x: int) -> int:
        await trio.sleep(2 - x)
        if x == 1:
            raise FnError(1)
        raise KeyboardInterrupt

    s = bt.from_iterable(range(2)).map(fn, concurrency=2)
    with no_leaks():
        exc = await raised_by(s.collect)
    assert type(exc) is KeyboardInterrupt


async def test_keyboard_interrupt_from_a_stopped_call_is_not_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The consumer leaves after one item; the call for item 1 turns its cancellation into
    KeyboardInterrupt: it arrives when the block exits."""

    async def fn(x: int) -> int:
        if x == 1:
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                raise KeyboardInterrupt from None  # noqa: ASYNC104 - under test
        return x

    async def consume() -> None:
        async with bt.from_iterable(range(3)).map(fn, concurrency=2).open() as it:
            async for _ in it:
                break

    with no_leaks():
        exc = await raised_by(consume)
    assert type(exc) is KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# A shared limiter's tokens may change (issue 17)
# --------------------------------------------------------------------------------------------


async def test_a_limiter_whose_tokens_drop_to_zero_waits_and_resumes_when_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = trio.CapacityLimiter(1)
    flight = InFlight()
    s = bt.from_iterable(range(20)).map(sleeping(flight, lambda x: 1), concurrency=limiter)
    limiter.total_tokens = 0
    got: list[int] = []

    async def consume() -> None:
        got.extend(await s.collect())

    with no_leaks(), trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(5)
            assert flight.calls == 0
            limiter.total_tokens = 4
    assert got == [10 * i for i in range(20)]
    assert flight.peak == 4, "the window was fixed by a snapshot of the tokens"


async def test_the_default_window_follows_a_limiter_raised_mid_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = trio.CapacityLimiter(1)
    flight = InFlight()
    s = bt.from_iterable(range(40)).map(sleeping(flight, lambda x: 1), concurrency=limiter)
    async with s.open() as it:
        assert await anext(it) == 0
        limiter.total_tokens = 5
        rest = [x async for x in it]
    assert rest == [10 * i for i in range(1, 40)]
    assert flight.peak == 5
    assert limiter.borrowed_tokens == 0


# --------------------------------------------------------------------------------------------
# Bad options are refused when the stream is built (issue 17)
# --------------------------------------------------------------------------------------------


async def _agen(x: int) -> AsyncGenerator[int, None]:
    await trio.lowlevel.checkpoint()
    yield x


def _agen_limiter(tokens: int) -> trio.CapacityLimiter:
    limiter = trio.CapacityLimiter(1)
    limiter.total_tokens = tokens
    return limiter


BAD_OPTIONS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("concurrency=0", {"concurrency": 0}, ValueError, "concurrency"),
    ("concurrency=-1", {"concurrency": -1}, ValueError, "concurrency"),
    ("concurrency=1.5", {"concurrency": 1.5}, TypeError, "concurrency"),
    ("concurrency='2'", {"concurrency": "2"}, TypeError, "concurrency"),
    ("concurrency=True", {"concurrency": True}, TypeError, "concurrency"),
    ("limiter(0)", {"concurrency": _agen_limiter(0)}, ValueError, "concurrency"),
    ("window=0", {"concurrency": 2, "window": 0}, ValueError, "window"),
    ("window=-5", {"concurrency": 2, "window": -5}, ValueError, "window"),
    ("window=True", {"concurrency": 2, "window": True}, TypeError, "window"),
    ("window=2.5", {"concurrency": 2, "window": 2.5}, TypeError, "window"),
    ("window='3'", {"concurrency": 2, "window": "3"}, TypeError, "window"),
    ("window-no-concurrency", {"window": -5}, TypeError, "window"),
    ("window=3-no-concurrency", {"window": 3}, TypeError, "concurrency"),
    ("ordered='no'", {"concurrency": 2, "ordered": "no"}, TypeError, "ordered"),
    ("ordered=None", {"concurrency": 2, "ordered": None}, TypeError, "ordered"),
    ("ordered=1", {"concurrency": 2, "ordered": 1}, TypeError, "ordered"),
    ("ordered-sequential", {"ordered": "no"}, TypeError, "ordered"),
    ("fn=5", {"fn": 5, "concurrency": 2}, TypeError, "fn"),
    ("fn=async-gen", {"fn": _agen, "concurrency": 2}, TypeError, "fn"),
    ("fn=partial-async-gen", {"fn": partial(_agen), "concurrency": 2}, TypeError, "fn"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [case[1:] for case in BAD_OPTIONS],
    ids=[case[0] for case in BAD_OPTIONS],
)
def test_bad_options_are_refused_when_the_stream_is_built(
    kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    options = dict(kwargs)
    fn = options.pop("fn", str)
    given_value = next(iter(v for k, v in kwargs.items() if k == names), None)
    with pytest.raises(error) as info:
        bt.from_iterable([1]).map(fn, **options)  # no trio.run: refused at build time
    message = str(info.value)
    assert names in message
    if given_value is not None and not isinstance(given_value, trio.CapacityLimiter):
        assert repr(given_value) in message or describe_fn(given_value) in message


def describe_fn(value: object) -> str:
    return getattr(value, "__qualname__", repr(value))


def test_a_limiter_with_zero_tokens_names_them() -> None:
    with pytest.raises(ValueError, match="total_tokens=0"):
        bt.from_iterable([1]).map(str, concurrency=_agen_limiter(0))


async def test_an_error_from_a_call_before_an_upstream_error_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The producer fails after items 0..2 at once; the call for item 1 fails later, at t=2:
    its position is earlier, so the stream is item 0, then the call's error."""
    upstream = FnError("upstream")
    flight = InFlight()
    fn = positional(flight, {0: 1, 2: 3}, {1: 2})
    res = (
        await ScriptedProducer(range(3), raise_before=3, error=upstream, cleanup_checkpoints=0)
        .stream()
        .map(fn, concurrency=5)
        .collect_result()
    )
    assert res.items == [0]
    assert isinstance(res.error, FnError)
    assert res.error.args == (1,)
    assert flight.now == 0


@pytest.mark.parametrize("ordered", [True, False])
async def test_leaving_while_workers_wait_for_room_in_the_window(
    autojump_clock: trio.testing.MockClock, ordered: bool
) -> None:
    """A sync source, a window of 3 and a consumer that stops after one item: the workers
    waiting for room are stopped with the rest."""
    flight = InFlight()
    fn = sleeping(flight, lambda x: 0.1 * (x % 3))
    with no_leaks():
        async with (
            bt.from_iterable(range(100))
            .map(fn, concurrency=3, window=3, ordered=ordered)
            .open() as it
        ):
            await anext(it)
            await trio.sleep(5)  # every worker finishes and waits for room
            assert flight.now == 0
            assert flight.calls == 4  # the window: 3 results, 1 of them taken, +1 started
    assert flight.now == 0
