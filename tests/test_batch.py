"""Tests of ``s.batch(size, within=None)`` (docs/design.md, "What is fixed"; issue 3): lists of
up to ``size``, a partial batch flushed ``within`` seconds after its first item, the partial batch
delivered before an upstream error (which arrives as itself), a cancelled request keeps the
partial batch, leaving and cancellation.
"""

from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import drain_with_timeouts, raised_by, tasks_living
from _stage_helpers import ERRORS, ExitState, cancelled_while_consuming
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, no_leaks

# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("within", [None, 5.0])
@pytest.mark.parametrize(
    "source",
    [
        lambda: bt.from_iterable(range(10)),
        lambda: ScriptedProducer.counting(10).stream(),
        lambda: bt.from_iterable(range(10)).map(lambda x: x),
    ],
    ids=["sync", "async", "sync-map"],
)
async def test_lists_of_up_to_size(source: Any, within: float | None) -> None:
    with no_leaks():
        assert await source().batch(3, within=within).collect() == [
            [0, 1, 2],
            [3, 4, 5],
            [6, 7, 8],
            [9],
        ]
        assert await source().batch(5, within=within).collect() == [
            [0, 1, 2, 3, 4],
            [5, 6, 7, 8, 9],
        ]
        assert await source().batch(1, within=within).collect() == [[i] for i in range(10)]
        assert await source().batch(100, within=within).collect() == [list(range(10))]


async def test_an_empty_stream_has_no_batches() -> None:
    assert await bt.from_iterable([]).batch(3).collect() == []
    assert await ScriptedProducer.counting(0).stream().batch(3, within=1).collect() == []


@settings(deadline=None, max_examples=60)
@given(
    xs=st.lists(st.integers(), max_size=60),
    size=st.integers(min_value=1, max_value=12),
    within=st.one_of(st.none(), st.sampled_from([0.5, 1.0, 3.0])),
    delays=st.lists(st.sampled_from([0.0, 0.4, 1.0, 2.0]), min_size=1, max_size=8),
    async_source=st.booleans(),
)
def test_concatenated_batches_are_the_stream(
    xs: list[int], size: int, within: float | None, delays: list[float], async_source: bool
) -> None:
    async def main() -> None:
        @bt.stream
        async def produce() -> AsyncGenerator[int, None]:
            for i, x in enumerate(xs):
                await trio.sleep(delays[i % len(delays)])
                yield x

        source = produce() if async_source else bt.from_iterable(xs)
        batches = await source.batch(size, within=within).collect()
        assert [x for b in batches for x in b] == xs
        assert all(1 <= len(b) <= size for b in batches)
        if within is None or not async_source:
            # nothing forces an early flush: every batch but the last is full
            assert all(len(b) == size for b in batches[:-1])

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("size", [0, -2])
def test_size_must_be_at_least_one(size: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the implementation's
        bt.from_iterable([1]).batch(size)


@pytest.mark.parametrize("within", [0, -1.0, float("inf"), float("nan")])
def test_within_must_be_a_positive_finite_number(within: float) -> None:
    with pytest.raises(ValueError, match="within"):
        bt.from_iterable([1]).batch(3, within=within)


@pytest.mark.parametrize(("size", "within"), [(1.5, None), ("3", None), (3, "1")])
def test_size_and_within_types_are_checked(size: Any, within: Any) -> None:
    with pytest.raises(TypeError):
        bt.from_iterable([1]).batch(size, within=within)


# --------------------------------------------------------------------------------------------
# within: a partial batch is flushed that long after its first item
# --------------------------------------------------------------------------------------------


async def test_a_partial_batch_is_flushed_within_seconds_after_its_first_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # items at 1, 2, 3 (first batch fills at 3), 4, 5 then a 20 s gap, 25, then the end at 26
    s = (
        ScriptedProducer(
            [str(i) for i in range(7)],
            delay=[1, 1, 1, 1, 1, 20, 1],
            cleanup_checkpoints=0,
        )
        .stream()
        .batch(3, within=2.5)
    )
    t0 = trio.current_time()
    with no_leaks():
        async with s.open() as it:
            arrivals: list[tuple[list[str], float]] = [
                (b, trio.current_time() - t0) async for b in it
            ]
    assert arrivals == [
        (["0", "1", "2"], 3),  # full: delivered at once, not held until 1 + 2.5
        (["3", "4"], 6.5),  # first item at 4: flushed at 4 + 2.5
        (["5", "6"], 26),  # first item at 25: the end came first
    ]


async def test_the_within_clock_starts_at_the_first_item_not_at_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = (
        ScriptedProducer(
            [str(i) for i in range(4)],
            delay=[10, 1, 1, 10],
            cleanup_checkpoints=0,
        )
        .stream()
        .batch(10, within=2.5)
    )
    t0 = trio.current_time()
    async with s.open() as it:
        assert await anext(it) == ["0", "1", "2"]
        assert trio.current_time() - t0 == 12.5
        assert await anext(it) == ["3"]
        assert trio.current_time() - t0 == 22


async def test_within_counts_from_the_first_item_even_if_the_consumer_is_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A consumer that asks late gets what is due, and later items go to the next batch."""
    s = ScriptedProducer.counting(6, delay=1).stream().buffer(10).batch(10, within=2.5)
    async with s.open() as it:
        await trio.sleep(100)  # everything is buffered by now
        assert await anext(it) == [0, 1, 2, 3, 4, 5]
        with pytest.raises(StopAsyncIteration):
            await anext(it)


async def test_within_never_delivers_an_empty_batch(autojump_clock: trio.testing.MockClock) -> None:
    s = (
        ScriptedProducer([str(i) for i in range(2)], delay=[30, 30], cleanup_checkpoints=0)
        .stream()
        .batch(4, within=1)
    )
    t0 = trio.current_time()
    assert await s.collect() == [["0"], ["1"]]
    assert trio.current_time() - t0 == 60


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


# Exceptions, not KeyboardInterrupt: a partial batch is delivered before an error, which then
# waits for the next request; Ctrl-C must not wait (see the test after these).
EXCEPTIONS = {k: v for k, v in ERRORS.items() if k != "keyboard-interrupt"}


@pytest.mark.parametrize("within", [None, 10.0])
@pytest.mark.parametrize("kind", list(EXCEPTIONS), ids=list(EXCEPTIONS))
async def test_the_partial_batch_comes_before_an_upstream_error_which_arrives_as_itself(
    kind: str, within: float | None
) -> None:
    err = ERRORS[kind]()
    probe = ScriptedProducer(range(5), raise_before=5, error=err, cleanup_checkpoints=0)
    got: list[list[int]] = []

    async def consume() -> None:
        async with probe.stream().batch(3, within=within).open() as it:
            async for b in it:
                got.append(b)  # noqa: PERF401 - keeps what arrived before the error

    with no_leaks():
        assert await raised_by(consume) is err
    assert got == [[0, 1, 2], [3, 4]]
    assert probe.cleanups == 1


@pytest.mark.parametrize("kind", list(EXCEPTIONS), ids=list(EXCEPTIONS))
async def test_a_sync_source_error_after_a_partial_batch(kind: str) -> None:
    err = ERRORS[kind]()

    def gen() -> Iterator[int]:
        yield from range(4)
        raise err

    got: list[list[int]] = []

    async def consume() -> None:
        async with bt.from_iterable(gen()).batch(3).open() as it:
            async for b in it:
                got.append(b)  # noqa: PERF401 - keeps what arrived before the error

    with no_leaks():
        assert await raised_by(consume) is err
    assert got == [[0, 1, 2], [3]]


@pytest.mark.parametrize("within", [None, 10.0])
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_keyboard_interrupt_after_a_partial_batch_arrives_as_itself(
    sync: bool, within: float | None
) -> None:
    ki = KeyboardInterrupt()

    def gen() -> Iterator[int]:
        yield from range(5)
        raise ki

    source = (
        bt.from_iterable(gen())
        if sync
        else ScriptedProducer(range(5), raise_before=5, error=ki, cleanup_checkpoints=0).stream()
    )
    got: list[list[int]] = []

    async def consume() -> None:
        async with source.batch(3, within=within).open() as it:
            async for b in it:
                got.append(b)  # noqa: PERF401 - keeps what arrived before the error

    with no_leaks():
        assert await raised_by(consume) is ki
    # delivered before Ctrl-C, or Ctrl-C at once: either way nothing else
    assert got in ([[0, 1, 2]], [[0, 1, 2], [3, 4]])


async def test_an_error_on_a_batch_boundary_is_not_preceded_by_an_empty_batch() -> None:
    err = ValueError("x")
    res = (
        await ScriptedProducer(range(6), raise_before=6, error=err, cleanup_checkpoints=0)
        .stream()
        .batch(3)
        .collect_result()
    )
    assert res.items == [[0, 1, 2], [3, 4, 5]]
    assert res.error is err


async def test_collect_result_gives_the_batches_and_the_error() -> None:
    err = KeyError("k")
    res = (
        await ScriptedProducer(range(4), raise_before=4, error=err, cleanup_checkpoints=0)
        .stream()
        .batch(3, within=1)
        .collect_result()
    )
    assert res.items == [[0, 1, 2], [3]]
    assert res.error is err


# --------------------------------------------------------------------------------------------
# A cancelled request keeps the partial batch
# --------------------------------------------------------------------------------------------


async def test_a_cancelled_request_keeps_the_partial_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer(
        [str(i) for i in range(5)],
        delay=[0, 0, 10, 0, 0],
        cleanup_checkpoints=0,
    )
    # 0 and 1 at once, then 2 after 10 s
    s = probe.stream().batch(3)
    async with s.open() as it:
        with trio.move_on_after(1) as cs:
            await anext(it)
        assert cs.cancelled_caught  # the request was cancelled holding [0, 1]
        assert await anext(it) == ["0", "1", "2"]
        assert await anext(it) == ["3", "4"]


async def test_a_cancelled_request_with_within_keeps_the_partial_batch_and_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = (
        ScriptedProducer([str(i) for i in range(3)], delay=[1, 1, 20], cleanup_checkpoints=0)
        .stream()
        .batch(10, within=5)
    )
    t0 = trio.current_time()
    async with s.open() as it:
        with trio.move_on_after(3) as cs:
            await anext(it)
        assert cs.cancelled_caught  # at 3, holding ["0", "1"] (first item at 1)
        assert await anext(it) == ["0", "1"]
        assert trio.current_time() - t0 == 6  # 1 + 5, not 3 + 5
        assert await anext(it) == ["2"]


@settings(deadline=None, max_examples=40)
@given(
    delays=st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5]), max_size=14),
    size=st.integers(min_value=1, max_value=5),
    within=st.one_of(st.none(), st.sampled_from([0.5, 2.0])),
    patience=st.sampled_from([0.0, 0.2, 0.7, 1.5]),
)
def test_timeouts_on_anext_lose_no_item(
    delays: list[float], size: int, within: float | None, patience: float
) -> None:
    async def main() -> None:
        probe = ScriptedProducer(
            [str(i) for i in range(len(delays))], delay=delays, cleanup_checkpoints=0
        )
        with no_leaks():
            async with probe.stream().batch(size, within=within).open() as it:
                batches, _ = await drain_with_timeouts(it, patience)
        assert [x for b in batches for x in b] == [str(i) for i in range(len(delays))]
        assert all(1 <= len(b) <= size for b in batches)
        assert probe.cleanups == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------------------------
# Leaving and cancellation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("within", [None, 0.5])
async def test_breaking_out_stops_the_producer_before_the_block_ends(
    autojump_clock: trio.testing.MockClock, within: float | None
) -> None:
    probe = ScriptedProducer.counting(delay=0.2)
    state = ExitState()
    before = tasks_living()
    try:
        async with probe.stream().batch(4, within=within).open() as it:
            async for b in it:
                if b[-1] >= 6:
                    break
    finally:
        state.record([probe])
    assert state.finalized == [1]
    assert state.tasks == before


@pytest.mark.parametrize("within", [None, 3.0])
@pytest.mark.parametrize("by", ["cancel", "deadline"])
async def test_external_cancellation_is_never_a_clean_end(
    autojump_clock: trio.testing.MockClock, by: str, within: float | None
) -> None:
    probe = ScriptedProducer.counting(40, delay=1)

    def make() -> bt.Stream[list[int]]:
        return probe.stream().batch(2, within=within)

    with no_leaks():
        if by == "cancel":
            got, after_loop, caught = await cancelled_while_consuming(make, cancel_after=2)
        else:
            got, after_loop, caught = await cancelled_while_consuming(make, deadline=5.5)
    assert got == [[0, 1], [2, 3]]
    assert not after_loop
    assert caught
    assert probe.cleanups == 1


async def test_batches_of_a_buffered_merge(autojump_clock: trio.testing.MockClock) -> None:
    """The stages compose: merge -> buffer -> batch(within) -> concurrent map."""

    async def total(b: list[int]) -> int:
        await trio.sleep(0.5)
        return sum(b)

    s = (
        bt.merge(
            ScriptedProducer.counting(10, delay=1).stream(),
            ScriptedProducer.counting(10, delay=1.5).stream(),
        )
        .buffer(4)
        .batch(3, within=2)
        .map(total, concurrency=2)
    )
    with no_leaks():
        sums = await s.collect()
    assert sum(sums) == 2 * sum(range(10))
