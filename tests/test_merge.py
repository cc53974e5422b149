"""Tests of ``bt.merge(*streams, capacity=64)`` (docs/design.md, "What is fixed"; issue 3): arrival
order, the end, the first error (as itself, after the items before it, stopping the others at
once), leaving and cancellation, read-ahead bounds, and the Go ``MergeStreams`` failure modes
(docs/design.md, "Bugs of the prior art") shown not to happen.
"""

import itertools
from collections import Counter
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import (
    Probe,
    contains_identical,
    drain_with_timeouts,
    raised_by,
    reachable,
    tasks_living,
)
from _stage_helpers import (
    ERRORS,
    ExitState,
    all_blocked,
    cancelled_while_consuming,
    endless_sync,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks

# --------------------------------------------------------------------------------------------
# Items and order
# --------------------------------------------------------------------------------------------


async def test_items_arrive_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    a = ScriptedProducer([f"a{i}" for i in range(3)], delay=[1, 2, 2], cleanup_checkpoints=0)
    b = ScriptedProducer([f"b{i}" for i in range(2)], delay=[2, 2], cleanup_checkpoints=0)
    c = ScriptedProducer([f"c{i}" for i in range(1)], delay=[5.5], cleanup_checkpoints=0)
    s = bt.merge(
        a.stream(),  # at 1, 3, 5
        b.stream(),  # at 2, 4
        c.stream(),  # at 5.5
    )
    t0 = trio.current_time()
    with no_leaks():
        async with s.open() as it:
            arrivals: list[tuple[str, float]] = [(x, trio.current_time() - t0) async for x in it]
    assert arrivals == [("a0", 1), ("b0", 2), ("a1", 3), ("b1", 4), ("a2", 5), ("c0", 5.5)]
    assert (a.cleanups, b.cleanups, c.cleanups) == (1, 1, 1)


async def test_merge_ends_only_when_every_source_has_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = bt.merge(
        bt.from_iterable([]),
        ScriptedProducer(
            [f"late{i}" for i in range(1)], delay=[10], cleanup_checkpoints=0
        ).stream(),
        bt.from_iterable(["x"]),
    )
    t0 = trio.current_time()
    assert await s.collect() == ["x", "late0"]
    assert trio.current_time() - t0 == 10


async def test_merge_of_nothing_is_empty() -> None:
    with no_leaks():
        nothing: bt.Stream[int] = bt.merge()
        assert await nothing.collect() == []
        async with nothing.open() as it:
            assert [x async for x in it] == []


async def test_merge_of_one_stream_is_that_stream() -> None:
    probe = ScriptedProducer.counting(300)
    assert await bt.merge(probe.stream()).collect() == list(range(300))
    assert probe.opened == probe.cleanups == 1


async def test_merge_of_large_sync_sources_keeps_every_item() -> None:
    with no_leaks():
        got = await bt.merge(
            bt.from_iterable(range(0, 20_000)),
            bt.from_iterable(range(20_000, 40_000)),
            bt.from_iterable(range(40_000, 60_000)),
        ).collect()
    assert sorted(got) == list(range(60_000))
    for lo in (0, 20_000, 40_000):
        mine = [x for x in got if lo <= x < lo + 20_000]
        assert mine == list(range(lo, lo + 20_000))


async def test_merged_streams_are_cold_and_reopenable() -> None:
    a = ScriptedProducer.counting(3)
    b = ScriptedProducer.counting(2)
    s = bt.merge(a.stream(), b.stream())
    await all_blocked()
    assert a.opened == b.opened == 0
    assert sorted(await s.collect()) == [0, 0, 1, 1, 2]
    assert sorted(await s.collect()) == [0, 0, 1, 1, 2]
    assert a.opened == b.opened == 2


def test_merge_takes_only_streams() -> None:
    not_a_stream: Any = [2, 3]
    with pytest.raises(TypeError):
        bt.merge(bt.from_iterable([1]), not_a_stream)


@settings(deadline=None, max_examples=60)
@given(
    xss=st.lists(st.lists(st.integers(0, 1000), max_size=40), max_size=5),
    kinds=st.lists(st.sampled_from(["sync", "async", "async-map"]), min_size=1, max_size=5),
    capacity=st.integers(min_value=1, max_value=8),
    break_after=st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
)
def test_merge_is_the_multiset_union_and_keeps_each_sources_order(
    xss: list[list[int]], kinds: list[str], capacity: int, break_after: int | None
) -> None:
    # tag every item with its source so per-source order can be checked
    tagged = [[(i, x) for x in xs] for i, xs in enumerate(xss)]

    async def main() -> None:
        sources: list[bt.Stream[tuple[int, int]]] = []
        probes: list[ScriptedProducer[tuple[int, int]]] = []
        for xs, kind in zip(tagged, itertools.cycle(kinds), strict=False):
            if kind == "sync":
                sources.append(bt.from_iterable(xs))
            else:
                probe = ScriptedProducer(xs, cleanup_checkpoints=0)
                probes.append(probe)
                source = probe.stream()
                sources.append(source if kind == "async" else source.map(lambda t: t))
        got: list[tuple[int, int]] = []
        before = tasks_living()
        state = ExitState()
        try:
            async with bt.merge(*sources, capacity=capacity).open() as it:
                async for x in it:
                    if break_after is not None and len(got) >= break_after:
                        break
                    got.append(x)
        finally:
            state.record(probes)
        assert state.tasks == before
        assert state.finalized == [p.opened for p in probes]
        for i, xs in enumerate(tagged):
            mine = [t for t in got if t[0] == i]
            assert mine == xs[: len(mine)]
        if break_after is None:
            assert Counter(got) == Counter(t for xs in tagged for t in xs)

    trio.run(main)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_the_first_error_arrives_as_itself_after_the_items_before_it(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    err = ERRORS[kind]()
    bad = ScriptedProducer(
        range(100, 100 + 2), raise_before=2, error=err, delay=1, cleanup_checkpoints=0
    )
    good = ScriptedProducer.counting(delay=0.75)
    got: list[int] = []

    async def consume() -> None:
        with trio.fail_after(100):  # the endless source must be stopped, not run for ever
            async with bt.merge(
                bad.stream(),  # 100 at 1, 101 at 2, raises at 2
                good.stream(),  # 0 at .75, 1 at 1.5, 2 at 2.25 ...
            ).open() as it:
                async for x in it:
                    got.append(x)  # noqa: PERF401 - keeps what arrived before the error

    t0 = trio.current_time()
    with no_leaks():
        exc = await raised_by(consume)
    assert exc is err
    assert trio.current_time() - t0 == 2
    assert got == [0, 100, 1, 101]
    assert bad.cleanups == good.cleanups == 1


async def test_the_first_error_stops_the_other_sources_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The other producers are interrupted in the middle of an item (a long sleep) and their
    ``finally`` has run when the error reaches the consumer."""
    err = ValueError("boom")
    bad = ScriptedProducer(range(1), raise_before=1, error=err, delay=3, cleanup_checkpoints=0)
    slow = [Probe(), Probe()]
    finally_at: list[float] = []
    t0 = trio.current_time()

    def sleeper(probe: Probe) -> bt.Stream[int]:
        @bt.stream
        async def produce() -> AsyncGenerator[int, None]:
            probe.entered += 1
            try:
                yield 0
                await trio.sleep(1000)
                yield 1  # pragma: no cover
            finally:
                probe.finalized += 1
                finally_at.append(trio.current_time() - t0)

        return produce()

    async def consume() -> None:
        with trio.fail_after(100):  # fails the test, rather than hanging it, if not stopped
            async with bt.merge(sleeper(slow[0]), bad.stream(), sleeper(slow[1])).open() as it:
                async for _ in it:
                    pass

    state = ExitState()
    try:
        with no_leaks():
            exc = await raised_by(consume)
    finally:
        state.record([bad, *slow])
    assert exc is err
    assert trio.current_time() - t0 == 3
    assert state.finalized == [1, 1, 1]
    assert finally_at == [3, 3]


async def test_an_error_stops_an_endless_sync_source() -> None:
    """A source with no await in it (an endless generator) is stopped by the first error."""
    err = KeyError("x")
    probe = Probe()

    async def run() -> list[int]:
        with trio.fail_after(10):  # the endless source must be stopped, not run for ever
            return await bt.merge(
                endless_sync(probe),
                ScriptedProducer(
                    range(5), raise_before=5, error=err, cleanup_checkpoints=0
                ).stream(),
            ).collect()

    with no_leaks():
        exc = await raised_by(run)
    assert exc is err
    assert probe.finalized == 1


async def test_simultaneous_errors_are_none_lost() -> None:
    """Every error that was actually raised is reported: one as itself, several in a group."""
    e1, e2 = ValueError(1), ValueError(2)
    raised: list[BaseException] = []

    def raising(err: BaseException) -> bt.Stream[int]:
        def gen() -> Iterator[int]:
            raised.append(err)
            raise err
            yield 0  # pragma: no cover

        return bt.from_iterable(gen())

    with no_leaks():
        exc = await raised_by(bt.merge(raising(e1), raising(e2)).collect)
    leaves = reachable(exc)
    assert raised
    for err in raised:
        assert contains_identical(leaves, err), f"{err!r} was lost: {exc!r}"
    if len(raised) == 1:
        assert exc is raised[0]


async def test_an_error_in_the_consumers_body_arrives_as_itself_and_stops_all() -> None:
    probes = [ScriptedProducer.counting(), ScriptedProducer.counting()]
    for err in [ValueError("body"), ExceptionGroup("mine", [KeyError(1)]), KeyboardInterrupt()]:
        for p in probes:
            p.runs.clear()

        async def consume(err: BaseException = err) -> None:
            async with bt.merge(probes[0].stream(), probes[1].stream()).open() as it:
                async for x in it:
                    if x == 5:
                        raise err

        with no_leaks():
            assert await raised_by(consume) is err
        assert [p.cleanups for p in probes] == [1, 1]


async def test_an_error_after_merge_downstream_arrives_as_itself() -> None:
    err = ExceptionGroup("mine", [ValueError()])

    def fn(x: int) -> int:
        if x == 3:
            raise err
        return x

    with no_leaks():
        exc = await raised_by(
            bt.merge(ScriptedProducer.counting(10).stream(), ScriptedProducer.counting(10).stream())
            .map(fn)
            .collect
        )
    assert exc is err


def test_capacity_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="capacity"):
        bt.merge(bt.from_iterable([1]), capacity=-3)


async def test_capacity_zero_is_refused_or_merges_correctly() -> None:
    """The contract does not say whether an unbuffered merge is allowed; either way it must
    not lose or invent items."""
    try:
        s = bt.merge(bt.from_iterable([1, 2]), ScriptedProducer.counting(3).stream(), capacity=0)
    except ValueError:
        return
    assert sorted(await s.collect()) == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("capacity", [1.5, "2", None])
def test_capacity_must_be_an_int(capacity: Any) -> None:
    with pytest.raises(TypeError):
        bt.merge(bt.from_iterable([1]), capacity=capacity)


# --------------------------------------------------------------------------------------------
# Read-ahead bounds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 4, 64])
async def test_read_ahead_is_bounded_by_capacity_plus_one_per_source(capacity: int) -> None:
    probes = [ScriptedProducer.counting() for _ in range(3)]
    with no_leaks():
        async with bt.merge(*(p.stream() for p in probes), capacity=capacity).open() as it:
            await all_blocked()
            started = sum(p.started for p in probes)
            assert capacity <= started <= capacity + len(probes)
            for _ in range(10):
                await anext(it)
            await all_blocked()
            assert sum(p.started for p in probes) <= capacity + len(probes) + 10
    assert [p.cleanups for p in probes] == [1, 1, 1]


async def test_a_sync_source_does_not_starve_the_others() -> None:
    """An endless in-memory source and a slow async one: both make progress."""
    fast = Probe()
    got: list[int] = []
    with no_leaks():
        async with bt.merge(
            endless_sync(fast), ScriptedProducer.counting().stream().map(lambda x: -1 - x)
        ).open() as it:
            async for x in it:
                got.append(x)
                if sum(1 for y in got if y < 0) >= 20:
                    break
    assert fast.finalized == 1
    assert len(got) < 200_000


# --------------------------------------------------------------------------------------------
# Leaving and cancellation: Go MergeStreams leaks goroutines when the consumer stops early
# and looks finished when cancelled (docs/design.md, "Bugs of the prior art")
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["break", "return", "take", "first"])
async def test_leaving_early_stops_every_source_before_the_block_ends(
    autojump_clock: trio.testing.MockClock, route: str
) -> None:
    probes = [
        ScriptedProducer.counting(delay=1),
        ScriptedProducer.counting(delay=1.5),
        ScriptedProducer.counting(),
    ]

    def make() -> bt.Stream[int]:
        return bt.merge(
            probes[0].stream(),
            probes[1].stream().map(lambda x: 100 + x),
            probes[2].stream().map(lambda x: 1000 + x),
        )

    state = ExitState()
    before = tasks_living()

    async def leave_by_return() -> int:
        try:
            async with make().open() as it:
                async for x in it:
                    if x >= 1005:
                        return x
        finally:
            state.record(probes)
        return -1  # pragma: no cover

    if route == "break":
        try:
            async with make().open() as it:
                async for x in it:
                    if x >= 1005:
                        break
        finally:
            state.record(probes)
    elif route == "return":
        assert await leave_by_return() == 1005
    elif route == "take":
        assert len(await make().take(7).collect()) == 7
        state.record(probes)
    else:
        await make().first()
        state.record(probes)
    assert state.finalized == [1, 1, 1], "a producer's finally had not run when the block ended"
    assert state.tasks == before, "a task outlived the merge"


async def test_leaving_without_reading_stops_sources_blocked_on_a_full_channel() -> None:
    probes = [ScriptedProducer.counting(), ScriptedProducer.counting()]
    state = ExitState()
    before = tasks_living()
    try:
        async with bt.merge(probes[0].stream(), probes[1].stream(), capacity=2).open():
            await all_blocked()
    finally:
        state.record(probes)
    assert state.finalized == [1, 1]
    assert state.tasks == before


@pytest.mark.parametrize("by", ["cancel", "deadline"])
async def test_cancellation_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, by: str
) -> None:
    probes = [ScriptedProducer.counting(50, delay=1), ScriptedProducer.counting(50, delay=1)]

    def make() -> bt.Stream[int]:
        return bt.merge(probes[0].stream(), probes[1].stream())

    with no_leaks():
        if by == "cancel":
            got, after_loop, caught = await cancelled_while_consuming(make, cancel_after=5)
        else:
            got, after_loop, caught = await cancelled_while_consuming(make, deadline=3.5)
    assert len(got) == (5 if by == "cancel" else 6)
    assert not after_loop, "the cancelled merge looked finished"
    assert caught
    assert [p.cleanups for p in probes] == [1, 1]


async def test_cancelling_a_merge_of_finished_sources_is_not_a_clean_end() -> None:
    """Even when every source has already ended, a cancelled consumer raises Cancelled."""
    after_loop = False
    with trio.CancelScope() as cs:
        async with bt.merge(bt.from_iterable([1]), bt.from_iterable([2])).open() as it:
            await all_blocked()
            cs.cancel()
            async for _ in it:
                pass  # pragma: no cover
            after_loop = True
    assert cs.cancelled_caught
    assert not after_loop


async def test_a_shielded_consumer_does_not_see_a_clean_end_when_the_sources_are_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probes = [ScriptedProducer.counting(10, delay=1), ScriptedProducer.counting(10, delay=1.5)]
    after_loop = False
    with trio.CancelScope() as outer:
        async with bt.merge(probes[0].stream(), probes[1].stream()).open() as it:
            with trio.CancelScope(shield=True):
                try:
                    async for x in it:
                        if x == 2:
                            outer.cancel()
                    after_loop = True
                except trio.BrokenResourceError:
                    pass  # an error that says the stream cannot go on: fine
    assert not after_loop, "the merge looked finished"
    assert [p.cleanups for p in probes] == [1, 1]


async def test_a_timed_out_anext_loses_no_item(autojump_clock: trio.testing.MockClock) -> None:
    pa = ScriptedProducer(
        [f"a{i}" for i in range(6)],
        delay=[0.5, 2, 0.1, 3, 0, 2.5],
        cleanup_checkpoints=0,
    )
    pb = ScriptedProducer(
        [f"b{i}" for i in range(4)],
        delay=[1.7, 0, 4, 0.3],
        cleanup_checkpoints=0,
    )
    s = bt.merge(pa.stream(), pb.stream())
    with no_leaks():
        async with s.open() as it:
            got, cancelled = await drain_with_timeouts(it, 1.0)
    assert cancelled >= 2
    assert [x for x in got if x[0] == "a"] == [f"a{i}" for i in range(6)]
    assert [x for x in got if x[0] == "b"] == [f"b{i}" for i in range(4)]
    assert len(got) == 10


@settings(deadline=None, max_examples=30)
@given(
    delays=st.lists(
        st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5]), max_size=8), min_size=1, max_size=3
    ),
    patience=st.sampled_from([0.0, 0.2, 0.7, 1.5]),
)
def test_timeouts_on_anext_lose_nothing_and_duplicate_nothing(
    delays: list[list[float]], patience: float
) -> None:
    async def main() -> None:
        s = bt.merge(
            *(
                ScriptedProducer(
                    [f"{i}:{k}" for k in range(len(d))], delay=d, cleanup_checkpoints=0
                ).stream()
                for i, d in enumerate(delays)
            )
        )
        with no_leaks():
            async with s.open() as it:
                got, _ = await drain_with_timeouts(it, patience)
        for i, d in enumerate(delays):
            assert [x for x in got if x.startswith(f"{i}:")] == [f"{i}:{k}" for k in range(len(d))]
        assert len(got) == sum(len(d) for d in delays)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
