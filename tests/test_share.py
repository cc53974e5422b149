"""Tests of ``bt.share(stream, *, replay, buffer, overflow)`` (issue 14): one hot producer, run
once, for subscribers who join late, leave, lag, resume and are cancelled.

The last test is the model-based adversary: random subscribers on a virtual clock, each
subscription's items checked against the source's sequence (gap-free and duplicate-free, or
ended by the lag or gap error), the producer run once, nothing left behind.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from _helpers import Probe
from hypothesis import event, given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio._share import _FAILED
from beluga_trio.testing import ScriptedProducer, no_leaks


class BoomError(Exception):
    pass


def failing_after(n: int, error: BaseException, probe: Probe | None = None) -> bt.Stream[int]:
    """``0 .. n-1``, one per virtual second, then raise ``error``."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        if probe is not None:
            probe.entered += 1
        try:
            for i in range(n):
                await trio.sleep(1)
                yield i
            raise error
        finally:
            if probe is not None:
                probe.finalized += 1

    return produce()


# --------------------------------------------------------------------------------------------
# Joining, replay, resuming
# --------------------------------------------------------------------------------------------


async def test_items_are_numbered_and_a_late_subscriber_gets_the_last_replay_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(6, delay=1)
    got: dict[str, list[tuple[int, int]]] = {}
    with no_leaks():
        async with bt.share(probe.stream(), replay=2) as shared:

            async def subscriber(name: str, delay: float) -> None:
                await trio.sleep(delay)
                got[name] = await shared.subscribe().collect()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(subscriber, "early", 0)
                nursery.start_soon(subscriber, "late", 4.5)  # items 0..3 produced by then
    assert got["early"] == [(i, i) for i in range(6)]
    assert got["late"] == [(i, i) for i in range(2, 6)]
    assert probe.opened == 1
    assert probe.cleanups == 1


async def test_after_resumes_right_after_that_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with bt.share(ScriptedProducer.counting(10, delay=1).stream(), replay=4) as shared:
        first: list[tuple[int, int]] = []
        async with shared.subscribe().open() as items:
            async for pair in items:
                first.append(pair)
                if pair[0] == 3:
                    break
        await trio.sleep(3.5)  # the producer goes on meanwhile: items 4..6 (and more)
        rest = await shared.subscribe(after=first[-1][0]).collect()
    assert [*first, *rest] == [(i, i) for i in range(10)]


async def test_after_outside_the_replay_window_is_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with bt.share(ScriptedProducer.counting(10, delay=1).stream(), replay=3) as shared:
        await trio.sleep(8.5)  # items 0..7 produced: the window is 5..7
        with pytest.raises(bt.ReplayGapError, match=r"after=1.*item 2.*replay=3.*5\.\.7") as info:
            await shared.subscribe(after=1).collect()
        assert (info.value.expected, info.value.oldest, info.value.missed) == (2, 5, 3)
        assert isinstance(info.value, LookupError)
        assert await shared.subscribe(after=4).collect() == [(i, i) for i in range(5, 10)]
        with pytest.raises(ValueError, match=r"after=10.*produced 10"):
            await shared.subscribe(after=10).collect()
        # Resuming after the last item of a finished stream: nothing more, a clean end.
        assert await shared.subscribe(after=9).collect() == []


async def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="needs a Stream"):
        bt.share([1, 2])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="replay >= 0, got -1"):
        bt.share(bt.from_iterable([1]), replay=-1)
    with pytest.raises(ValueError, match="buffer >= 1, got 0"):
        bt.share(bt.from_iterable([1]), buffer=0)
    with pytest.raises(TypeError, match=r"int buffer, got 1\.5"):
        bt.share(bt.from_iterable([1]), buffer=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="overflow must be one of"):
        bt.share(bt.from_iterable([1]), overflow="drop_oldest")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    async with bt.share(bt.from_iterable([1])) as shared:
        with pytest.raises(ValueError, match="seq >= 0, got -1"):
            shared.subscribe(after=-1)
        with pytest.raises(TypeError, match="an int seq, got '3'"):
            shared.subscribe(after="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def test_subscribing_after_the_block_has_exited_raises() -> None:
    async with bt.share(bt.from_iterable(range(3)), replay=3) as shared:
        made_inside = shared.subscribe()
    with pytest.raises(trio.ClosedResourceError, match="block has exited"):
        shared.subscribe()
    with pytest.raises(trio.ClosedResourceError, match="block has exited"):
        await made_inside.collect()
    block = bt.share(bt.from_iterable([1]))
    async with block:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        async with block:
            pass  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Slow subscribers
# --------------------------------------------------------------------------------------------


async def test_a_slow_subscriber_never_blocks_the_producer_or_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fast: list[int] = []
    lagged: list[bt.LaggedError] = []
    async with bt.share(ScriptedProducer.counting(20, delay=1).stream(), buffer=4) as shared:

        async def slow() -> None:
            try:
                async with shared.subscribe().open() as items:
                    async for _ in items:
                        await trio.sleep(10.5)
            except bt.LaggedError as exc:
                lagged.append(exc)

        async def quick() -> None:
            fast.extend(seq for seq, _ in await shared.subscribe().collect())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(quick)
            nursery.start_soon(slow)
        done_at = trio.current_time()
    [error] = lagged
    assert fast == list(range(20))  # the quick one got everything, at the source's pace
    # The slow one took item 0 at t=1, asked again at t=11.5: items 7..10 are kept.
    assert (error.expected, error.oldest, error.missed) == (1, 7, 6)
    assert "fell behind: it needed item 1" in str(error)
    assert "keeps only the newest 4 (items 7..10)" in str(error)
    assert done_at == pytest.approx(20)  # nobody waited for the slow one


async def test_overflow_wait_makes_the_slowest_subscriber_set_the_pace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen_ahead: list[int] = []
    async with bt.share(
        ScriptedProducer.counting(12).stream(), buffer=3, overflow="wait"
    ) as shared:

        async def slow() -> list[int]:
            got: list[int] = []
            async with shared.subscribe().open() as items:
                async for seq, _ in items:
                    got.append(seq)
                    seen_ahead.append(shared.produced - seq - 1)
                    await trio.sleep(1)
            return got

        got = await slow()
    assert got == list(range(12))
    assert max(seen_ahead) <= 3  # never more than `buffer` items ahead of the slowest
    assert trio.current_time() == pytest.approx(12)


async def test_leaving_the_slowest_subscription_lets_the_producer_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with bt.share(
        ScriptedProducer.counting(50).stream(), buffer=2, overflow="wait"
    ) as shared:
        async with shared.subscribe().open() as stuck:
            await stuck.__anext__()  # subscribed, then stops reading
            await trio.sleep(5)
            assert shared.produced == 3  # the producer waits for it
        assert shared.subscribers == 0
        assert [seq for seq, _ in await shared.subscribe(after=2).collect()] == list(range(3, 50))


# --------------------------------------------------------------------------------------------
# Ends, errors, cancellation
# --------------------------------------------------------------------------------------------


async def test_the_source_error_reaches_every_subscriber_after_every_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    boom = BoomError("model failed")
    results: list[bt.CollectResult[tuple[int, int]]] = []
    async with bt.share(failing_after(3, boom), replay=1) as shared:

        async def subscriber(delay: float) -> None:
            await trio.sleep(delay)
            results.append(await shared.subscribe().collect_result())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscriber, 0)
            nursery.start_soon(subscriber, 2.5)
            nursery.start_soon(subscriber, 10)  # after the end: the replay, then the error
    by_length = sorted(results, key=lambda r: -len(r.items))
    assert [r.items for r in by_length] == [[(0, 0), (1, 1), (2, 2)], [(1, 1), (2, 2)], [(2, 2)]]
    assert all(r.error is boom for r in results)


async def test_an_error_no_subscriber_received_is_raised_by_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    boom = BoomError()
    with pytest.raises(BoomError) as info:
        async with bt.share(failing_after(2, boom)):
            await trio.sleep(5)
    assert info.value is boom


async def test_the_bodys_exception_arrives_as_itself_and_stops_the_producer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    group = ExceptionGroup("mine", [BoomError()])
    caught: BaseException | None = None
    with no_leaks():
        try:
            async with bt.share(probe.stream()) as shared:
                await trio.sleep(2.5)
                assert shared.produced == 2
                raise group
        except ExceptionGroup as exc:
            caught = exc
    assert caught is group
    assert probe.cleanups == 1


async def test_leaving_the_block_stops_an_endless_producer_and_open_subscribers_see_a_broken_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    outcome: list[object] = []
    with no_leaks():
        async with trio.open_nursery() as outer:
            async with bt.share(probe.stream(), replay=5) as shared:
                subscription = shared.subscribe()

                async def outside() -> None:  # runs in a nursery outside the block
                    try:
                        async with subscription.open() as items:
                            async for seq, _ in items:
                                outcome.append(seq)
                                await trio.sleep(3)
                    except trio.BrokenResourceError as exc:
                        outcome.append(exc)

                outer.start_soon(outside)
                await trio.sleep(4.5)
            assert probe.cleanups == 1  # stopped when the block exited
            assert shared.done
    assert outcome[:4] == [0, 1, 2, 3]  # everything produced before the exit, then:
    assert isinstance(outcome[4], trio.BrokenResourceError)
    assert "stopped before its source ended" in str(outcome[4])


async def test_a_cancelled_anext_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    got: list[int] = []
    timeouts = 0
    async with (
        bt.share(ScriptedProducer.counting(6, delay=1).stream()) as shared,
        shared.subscribe().open() as items,
    ):
        while True:
            with trio.move_on_after(0.3) as cs:
                try:
                    seq, _ = await items.__anext__()
                except StopAsyncIteration:
                    break
                got.append(seq)
            timeouts += cs.cancelled_caught
    assert got == list(range(6))
    assert timeouts >= 6 * 3  # each item waited through several cancelled requests


async def test_leaving_or_cancelling_a_subscription_never_affects_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(10, delay=1)
    steady: list[int] = []
    async with bt.share(probe.stream()) as shared:

        async def quitter() -> None:
            async with shared.subscribe().open() as items:
                async for seq, _ in items:
                    if seq == 2:
                        break

        async def cancelled() -> None:
            with trio.move_on_after(4.5):
                await shared.subscribe().collect()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(quitter)
            nursery.start_soon(cancelled)
            steady.extend(seq for seq, _ in await shared.subscribe().collect())
        assert shared.subscribers == 0
    assert steady == list(range(10))
    assert (probe.opened, probe.produced, probe.cleanups) == (1, 10, 1)


async def test_the_block_cancelled_from_outside_stops_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    reached = False
    with no_leaks(), trio.move_on_after(3.5) as cs:
        async with bt.share(probe.stream()) as shared:
            await shared.subscribe().collect()
        reached = True  # pragma: no cover
    assert cs.cancelled_caught
    assert not reached
    assert probe.cleanups == 1


async def test_a_shielded_subscriber_of_a_cancelled_share_gets_a_broken_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcome: list[object] = []
    with trio.move_on_after(2.5):
        async with bt.share(ScriptedProducer.counting(delay=1).stream()) as shared:
            with trio.CancelScope(shield=True):
                try:
                    async with shared.subscribe().open() as items:
                        async for seq, _ in items:
                            outcome.append(seq)
                except trio.BrokenResourceError as exc:
                    outcome.append(type(exc))
    assert outcome == [0, 1, trio.BrokenResourceError]


async def test_keyboard_interrupt_in_the_producer_is_raised_by_the_block_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    interrupt = KeyboardInterrupt()
    body_cancelled = False
    block = bt.share(failing_after(2, interrupt))
    with pytest.raises(KeyboardInterrupt) as info:  # noqa: PT012 - the block is the scenario
        async with block:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                body_cancelled = True
                raise
    assert info.value is interrupt
    assert body_cancelled


async def test_an_error_from_the_producers_cleanup_is_raised_by_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cleanup = BoomError("cleanup")

    @bt.stream
    async def stubborn() -> AsyncGenerator[int, None]:
        try:
            while True:
                yield 1
                await trio.sleep(1)
        finally:
            raise cleanup

    with pytest.raises(BoomError) as info:
        async with bt.share(stubborn()):
            await trio.sleep(1.5)
    assert info.value is cleanup


async def test_an_error_raised_while_cancelled_from_outside_is_a_cleanup_error_not_the_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Classified by the shared outcome model (`_outcome.classify`): the producer's cleanup
    fails while a scope around the share is cancelled, before the block has asked it to stop.
    That error is not a position in the stream: a subscriber still reading (shielded) sees the
    share stopped, and the block raises the error as itself."""
    cleanup = BoomError("cleanup")

    @bt.stream
    async def stubborn() -> AsyncGenerator[int, None]:
        try:
            while True:
                yield 1
                await trio.sleep(1)
        finally:
            raise cleanup

    seen: list[object] = []
    with pytest.raises(BoomError) as info, trio.move_on_after(2.5):  # noqa: PT012
        async with bt.share(stubborn()) as shared:
            with trio.CancelScope(shield=True):
                try:
                    async with shared.subscribe().open() as items:
                        async for seq, _ in items:
                            seen.append(seq)
                except (trio.BrokenResourceError, BoomError) as exc:
                    seen.append(type(exc))
    assert info.value is cleanup
    assert seen == [0, 1, 2, trio.BrokenResourceError]


async def test_a_long_in_memory_source_is_shared_in_bounded_memory_and_stays_cancellable() -> None:
    n = 20_000
    async with bt.share(bt.from_iterable(range(n)), buffer=64, overflow="wait") as shared:
        seqs = [seq for seq, item in await shared.subscribe().collect() if seq == item]
    assert seqs == list(range(n))
    with trio.move_on_after(0.05) as cs:
        async with bt.share(bt.from_iterable(range(10**9)), buffer=64) as shared:
            await trio.sleep_forever()
    assert cs.cancelled_caught


# --------------------------------------------------------------------------------------------
# The model-based adversary
# --------------------------------------------------------------------------------------------


def value(seq: int) -> int:
    return 3 * seq + 1


@dataclass(frozen=True)
class SubscriberPlan:
    start: float  # virtual seconds before the first subscription
    pace: float  # seconds spent on each item
    leave_after: int | None  # a session leaves after this many items (None: to the end)
    patience: float | None  # every anext under this timeout, retried when it expires
    cancel_after: float | None  # the first session is cancelled after this long
    resumes: int  # sessions after the first, each resuming with after=last seq
    pause: float  # between sessions


@dataclass
class Record:
    sessions: list[list[int]] = field(default_factory=list[list[int]])
    ended_with: list[str] = field(default_factory=list[str])
    received_error: bool = False

    def ended(self, how: str) -> None:
        self.ended_with.append(how)
        event(f"a subscription ended by: {how}")  # shown by --hypothesis-show-statistics


plans = st.builds(
    SubscriberPlan,
    start=st.integers(0, 30).map(lambda t: t / 2),
    pace=st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5]),
    leave_after=st.none() | st.integers(0, 8),
    patience=st.none() | st.sampled_from([0.2, 0.7, 1.5]),
    cancel_after=st.none() | st.integers(1, 20).map(lambda t: t / 2),
    resumes=st.integers(0, 3),
    pause=st.integers(0, 8).map(lambda t: t / 2),
)


async def run_subscriber(
    shared: bt.Shared[int], plan: SubscriberPlan, record: Record, source_len: int, replay: int
) -> None:
    await trio.sleep(plan.start)
    last: int | None = None
    for session in range(1 + plan.resumes):
        if session:
            await trio.sleep(plan.pause)
        head = shared.produced
        seqs: list[int] = []
        record.sessions.append(seqs)
        expected = max(0, head - replay) if last is None else last + 1
        gap = last is not None and last + 1 < max(0, head - replay)
        deadline = math.inf
        if session == 0 and plan.cancel_after is not None:
            deadline = trio.current_time() + plan.cancel_after
        try:
            with trio.CancelScope(deadline=deadline):
                async with shared.subscribe(after=last).open() as items:
                    assert not gap, "resumed across a gap without an error"
                    while plan.leave_after is None or len(seqs) < plan.leave_after:
                        try:
                            if plan.patience is None:
                                seq, item = await items.__anext__()
                            else:
                                while True:
                                    with trio.move_on_after(plan.patience):
                                        seq, item = await items.__anext__()
                                        break
                        except StopAsyncIteration:
                            record.ended("end")
                            assert expected == source_len, "ended before the source's end"
                            return
                        assert seq == expected, f"got seq {seq}, expected {expected}"
                        assert item == value(seq)
                        seqs.append(seq)
                        last, expected = seq, seq + 1
                        await trio.sleep(plan.pace)
        except bt.ReplayGapError as exc:
            assert gap
            assert (exc.expected, exc.oldest) == (expected, max(0, head - replay))  # noqa: PT017 - the model
            record.ended("gap")
            return
        except bt.LaggedError as exc:
            assert exc.expected == expected < exc.oldest  # noqa: PT017
            record.ended("lag")
            return
        except BoomError:
            assert expected == source_len  # after every item
            record.received_error = True
            record.ended("error")
            return
        record.ended("left")


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 25),
    fails=st.booleans(),
    replay=st.integers(0, 6),
    buffer=st.integers(1, 6),
    overflow=st.sampled_from(["error", "wait"]),
    subscribers=st.lists(plans, max_size=6),
)
def test_model_every_subscription_is_a_gap_free_run_of_the_source(  # noqa: PLR0917
    n: int,
    fails: bool,
    replay: int,
    buffer: int,
    overflow: bt.ShareOverflow,
    subscribers: list[SubscriberPlan],
) -> None:
    boom = BoomError("source failed")
    probe = Probe()
    raised: list[bool] = []

    @bt.stream
    async def source() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            for i in range(n):
                probe.started += 1
                await trio.sleep(1)
                yield value(i)
            if fails:
                raised.append(True)
                raise boom
        finally:
            probe.finalized += 1

    records = [Record() for _ in subscribers]

    async def main() -> None:
        block_error: BaseException | None = None
        subscribed_at_end = -1
        failed_at_exit = False
        with no_leaks():
            try:
                async with bt.share(
                    source(), replay=replay, buffer=buffer, overflow=overflow
                ) as shared:
                    async with trio.open_nursery() as nursery:
                        for plan, record in zip(subscribers, records, strict=True):
                            nursery.start_soon(run_subscriber, shared, plan, record, n, replay)
                    subscribed_at_end = shared.subscribers
                    # Whether the share reached the source's error before the block stops it
                    # (no checkpoint between here and the stop). An error the source raised
                    # but the share never pulled is dropped, like any item not yet read.
                    failed_at_exit = shared._hub.state == _FAILED
            except BoomError as exc:
                block_error = exc
        # Opened once (or never, when the block was left before the producer's task ran).
        assert probe.entered <= 1, "the producer ran more than once"
        assert probe.finalized == probe.entered
        if any(r.sessions and any(r.sessions) for r in records):
            assert probe.entered == 1
        assert subscribed_at_end in {-1, 0}  # every subscription detached when it was left
        received = any(r.received_error for r in records)
        if failed_at_exit and not received:
            assert block_error is boom  # reached by no subscriber: raised by the block
        # The source may also fail while the block stops it (an error raised while its
        # consumer is being cancelled is a cleanup error, raised when the block exits).
        if received or failed_at_exit:
            assert raised
        if block_error is not None:
            assert block_error is boom
        for record in records:
            if overflow == "wait":
                assert "lag" not in record.ended_with
            if "error" in record.ended_with:
                assert fails

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
