"""Tests of ``await bt.fan_out(stream, *consumers, capacity=1024)`` (docs/design.md, "The
guarantees"; issue 3): every consumer sees every item in order, results in consumer order, the
source is read once, the slowest sets the pace with bounded buffers, early returns detach,
errors cancel everything and arrive as themselves, and the Go ``FanOut`` failure modes
(docs/design.md: leaked goroutines, deadlock when drained one after another, cancellation that looks
like the end) and asyncstdlib ``tee``'s unbounded buffering shown not to happen.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import contains_identical, drain_with_timeouts, raised_by, reachable, tasks_living
from _stage_helpers import ERRORS, ExitState, all_blocked
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio import _fanout
from beluga_trio.testing import ScriptedProducer, SweepRun, cancel_sweep, no_leaks

Consumer = Callable[[bt.Stream[int]], Awaitable[Any]]


async def collect(view: bt.Stream[int]) -> list[int]:
    return await view.collect()


def sleepy(per_item: float, *, before: float = 0.0, after: float = 0.0) -> Consumer:
    """A consumer that reads its view item by item, sleeping ``per_item`` after each."""

    async def consume(view: bt.Stream[int]) -> list[int]:
        await trio.sleep(before)
        got: list[int] = []
        async with view.open() as it:
            async for x in it:
                got.append(x)
                await trio.sleep(per_item)
        await trio.sleep(after)
        return got

    return consume


# --------------------------------------------------------------------------------------------
# Items, order, results, the source read once
# --------------------------------------------------------------------------------------------


async def test_every_consumer_sees_every_item_and_results_are_in_consumer_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(100)

    async def total(view: bt.Stream[int]) -> int:
        return await view.reduce(lambda a, x: a + x, 0)

    async def each(view: bt.Stream[int]) -> list[int]:
        seen: list[int] = []
        await view.for_each(seen.append)
        await trio.sleep(3)  # finishes last ...
        return seen

    async def first(view: bt.Stream[int]) -> int:
        return await view.first()  # ... and this one first

    with no_leaks():
        results = await bt.fan_out(
            probe.stream(),
            each,
            collect,
            total,
            sleepy(0.01, after=1),
            first,
        )
    assert results == [list(range(100)), list(range(100)), sum(range(100)), list(range(100)), 0]
    assert probe.opened == 1, "the source was opened more than once"
    assert probe.started == 100, "the source was read more than once"
    assert probe.cleanups == 1


async def test_a_sync_source_is_read_once() -> None:
    reads: list[int] = []

    def gen() -> Any:
        for i in range(3000):
            reads.append(i)
            yield i

    with no_leaks():
        results = await bt.fan_out(bt.from_iterable(gen()), collect, collect, collect, capacity=7)
    assert results == [list(range(3000))] * 3
    assert reads == list(range(3000))


async def test_no_consumers_gives_no_results() -> None:
    with no_leaks():
        assert await bt.fan_out(ScriptedProducer.counting(5).stream()) == []


async def test_one_consumer_is_a_plain_read() -> None:
    assert await bt.fan_out(bt.from_iterable(range(10)), collect) == [list(range(10))]


@settings(deadline=None, max_examples=40)
@given(
    xs=st.lists(st.integers(), max_size=50),
    paces=st.lists(st.sampled_from([None, 0.0, 0.5, 2.0]), min_size=1, max_size=4),
    buffer=st.integers(min_value=1, max_value=6),
    async_source=st.booleans(),
)
def test_every_view_equals_the_source(
    xs: list[int], paces: list[float | None], buffer: int, async_source: bool
) -> None:
    async def main() -> None:
        probe = ScriptedProducer(xs, cleanup_checkpoints=0)
        source = probe.stream() if async_source else bt.from_iterable(xs)
        consumers = [collect if pace is None else sleepy(pace) for pace in paces]
        with no_leaks():
            results = await bt.fan_out(source, *consumers, capacity=buffer)
        assert results == [xs] * len(paces)
        assert probe.started == (len(xs) if async_source else 0)
        assert probe.cleanups == probe.opened

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------------------------
# Pace and bounded buffers (asyncstdlib tee: unbounded buffering when one consumer lags)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("buffer", [1, 4, 32])
async def test_the_slowest_consumer_sets_the_pace(
    autojump_clock: trio.testing.MockClock, buffer: int
) -> None:
    probe = ScriptedProducer.counting(200)
    fast_seen = 0
    worst_lag = 0
    worst_fast_lead = 0

    async def fast(view: bt.Stream[int]) -> int:
        nonlocal fast_seen
        async with view.open() as it:
            async for _ in it:
                fast_seen += 1
        return fast_seen

    async def slow(view: bt.Stream[int]) -> int:
        nonlocal worst_lag, worst_fast_lead
        seen = 0
        async with view.open() as it:
            async for _ in it:
                seen += 1
                await trio.sleep(1)
                worst_lag = max(worst_lag, probe.started - seen)
                worst_fast_lead = max(worst_fast_lead, fast_seen - seen)
        return seen

    with no_leaks():
        assert await bt.fan_out(probe.stream(), fast, slow, capacity=buffer) == [200, 200]
    # items taken from the source but not yet seen by the slowest consumer: its buffer, plus
    # one in the distributor's hand
    assert worst_lag <= buffer + 2
    assert worst_fast_lead <= buffer + 2
    assert worst_lag >= buffer  # and the buffer is used


async def test_a_consumer_that_does_not_read_holds_back_the_source() -> None:
    probe = ScriptedProducer.counting(100)
    release = trio.Event()
    started_while_blocked = -1

    async def stuck(view: bt.Stream[int]) -> int:
        await release.wait()
        return len(await view.collect())

    async def watcher(view: bt.Stream[int]) -> int:
        nonlocal started_while_blocked
        n = 0
        async with view.open() as it:
            async for _ in it:
                n += 1
                if n == 3:
                    await all_blocked()
                    started_while_blocked = probe.started
                    release.set()
        return n

    with no_leaks():
        assert await bt.fan_out(probe.stream(), stuck, watcher, capacity=5) == [100, 100]
    assert 5 <= started_while_blocked <= 5 + 1


# --------------------------------------------------------------------------------------------
# Early returns detach; the others go on
# --------------------------------------------------------------------------------------------


async def _never_opens(view: bt.Stream[int]) -> str:
    await trio.lowlevel.checkpoint()
    return "never opened"


async def _takes_3(view: bt.Stream[int]) -> list[int]:
    return await view.take(3).collect()


async def _breaks_at_3(view: bt.Stream[int]) -> list[int]:
    got: list[int] = []
    async with view.open() as it:
        async for x in it:
            got.append(x)
            if len(got) == 3:
                break
    return got


async def _first(view: bt.Stream[int]) -> int:
    return await view.first()


async def _opens_and_returns(view: bt.Stream[int]) -> str:
    async with view.open():
        pass
    return "opened"


async def _late_quitter(view: bt.Stream[int]) -> str:
    await trio.sleep(5)  # its buffer fills and blocks the source meanwhile
    return "quit late"


EARLY: dict[str, tuple[Consumer, object]] = {
    "never-opens": (_never_opens, "never opened"),
    "take-3": (_takes_3, [0, 1, 2]),
    "break-at-3": (_breaks_at_3, [0, 1, 2]),
    "first": (_first, 0),
    "opens-and-returns": (_opens_and_returns, "opened"),
    "late-without-opening": (_late_quitter, "quit late"),
}


@pytest.mark.parametrize("buffer", [1, 1024])
@pytest.mark.parametrize("name", list(EARLY), ids=list(EARLY))
async def test_a_consumer_that_returns_early_is_detached_and_the_others_go_on(
    autojump_clock: trio.testing.MockClock, name: str, buffer: int
) -> None:
    probe = ScriptedProducer.counting(50, delay=0.25)
    early, expected = EARLY[name]
    with no_leaks(), trio.fail_after(1000):  # a consumer not detached blocks the rest
        results = await bt.fan_out(probe.stream(), collect, early, sleepy(0.5), capacity=buffer)
    assert results == [list(range(50)), expected, list(range(50))]
    assert probe.started == 50
    assert probe.cleanups == 1


@pytest.mark.parametrize("buffer", [1, 16])
async def test_when_every_consumer_has_returned_an_endless_source_is_stopped(
    buffer: int,
) -> None:
    probe = ScriptedProducer.counting()
    state = ExitState()
    before = tasks_living()
    try:
        with trio.fail_after(10):  # consumers not detached would block the endless source
            results = await bt.fan_out(
                probe.stream(), _takes_3, _breaks_at_3, _never_opens, _first, capacity=buffer
            )
    finally:
        state.record([probe])
    assert results == [[0, 1, 2], [0, 1, 2], "never opened", 0]
    assert state.finalized == [1]
    assert state.tasks == before


async def test_a_view_is_opened_once() -> None:
    async def twice(view: bt.Stream[int]) -> str:
        assert await view.collect() == [0, 1, 2]
        try:
            await view.collect()
        except bt.StreamConsumedError:
            return "refused"
        return "opened twice"  # pragma: no cover

    async def concurrently(view: bt.Stream[int]) -> str:
        async with view.open() as it:
            try:
                async with view.open():
                    pass  # pragma: no cover
            except bt.StreamConsumedError:
                return "refused" if [x async for x in it] == [0, 1, 2] else "lost items"
        return "opened twice"  # pragma: no cover

    with no_leaks(), trio.fail_after(10):
        assert await bt.fan_out(
            ScriptedProducer.counting(3).stream(), twice, concurrently, collect
        ) == [
            "refused",
            "refused",
            [0, 1, 2],
        ]


async def test_a_view_that_outlives_fan_out_does_not_pretend_to_be_empty() -> None:
    """A view smuggled out of its consumer cannot be read after ``fan_out`` returned: it
    raises (its consumer was detached), rather than hanging or looking like an empty stream."""
    escaped: list[bt.Stream[int]] = []

    async def keep(view: bt.Stream[int]) -> None:
        await trio.lowlevel.checkpoint()
        escaped.append(view)

    await bt.fan_out(ScriptedProducer.counting(5).stream(), keep, collect)
    with trio.fail_after(5):
        with pytest.raises(Exception) as info:  # noqa: PT011 - the contract names no type
            await escaped[0].collect()
    assert not isinstance(info.value, trio.TooSlowError)


@pytest.mark.parametrize("buffer", [0, -1])
async def test_buffer_must_be_positive(buffer: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        await bt.fan_out(ScriptedProducer.counting(3).stream(), collect, capacity=buffer)


@pytest.mark.parametrize("buffer", [1.0, "4", None])
async def test_buffer_must_be_an_int(buffer: Any) -> None:
    with pytest.raises(TypeError):
        await bt.fan_out(ScriptedProducer.counting(3).stream(), collect, capacity=buffer)


# --------------------------------------------------------------------------------------------
# Errors: any error cancels everything and is raised as itself
# --------------------------------------------------------------------------------------------


class Outcome:
    """How a consumer ended."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.after_loop = False
        self.cancelled = False
        self.finally_ran = False


def recording(outcome: Outcome, per_item: float = 0.0) -> Consumer:
    async def consume(view: bt.Stream[int]) -> list[int]:
        try:
            async with view.open() as it:
                async for x in it:
                    outcome.items.append(x)
                    await trio.sleep(per_item)
                outcome.after_loop = True
        except trio.Cancelled:
            outcome.cancelled = True
            raise
        finally:
            outcome.finally_ran = True
        return outcome.items

    return consume


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_a_source_error_cancels_the_consumers_and_arrives_as_itself(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    err = ERRORS[kind]()
    probe = ScriptedProducer(range(5), raise_before=5, error=err, delay=1, cleanup_checkpoints=0)
    outcomes = [Outcome(), Outcome()]
    t0 = trio.current_time()
    with no_leaks():
        exc = await raised_by(
            lambda: bt.fan_out(
                probe.stream(),
                recording(outcomes[0]),
                recording(outcomes[1], per_item=0.1),
            )
        )
    assert exc is err
    assert trio.current_time() - t0 == 5
    assert probe.cleanups == 1
    for outcome in outcomes:
        assert outcome.finally_ran
        assert not outcome.after_loop, "a consumer saw the failed source end cleanly"
        assert outcome.items == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", list(ERRORS), ids=list(ERRORS))
async def test_a_consumer_error_cancels_everything_and_arrives_as_itself(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    err = ERRORS[kind]()
    probe = ScriptedProducer.counting(delay=1)
    others = [Outcome(), Outcome()]

    async def bad(view: bt.Stream[int]) -> None:
        async with view.open() as it:
            async for x in it:
                if x == 3:
                    raise err

    t0 = trio.current_time()
    state = ExitState()
    before = tasks_living()
    try:
        exc = await raised_by(
            lambda: bt.fan_out(
                probe.stream(),  # endless
                recording(others[0]),
                bad,
                recording(others[1], per_item=10),
            )
        )
    finally:
        state.record([probe])
    assert exc is err
    assert trio.current_time() - t0 == 4
    assert state.finalized == [1]
    assert state.tasks == before
    for outcome in others:
        assert outcome.cancelled, "a consumer was not cancelled by the other's error"
        assert not outcome.after_loop


async def test_a_consumer_error_before_opening_its_view_arrives_as_itself() -> None:
    err = ExceptionGroup("own", [ValueError()])
    probe = ScriptedProducer.counting()

    async def bad(view: bt.Stream[int]) -> None:
        await trio.lowlevel.checkpoint()
        raise err

    with no_leaks():
        assert await raised_by(lambda: bt.fan_out(probe.stream(), collect, bad)) is err
    assert probe.cleanups == probe.opened


async def test_simultaneous_consumer_errors_are_none_lost() -> None:
    """Every error that was actually raised is reported: one as itself, several in a group."""
    e1, e2 = ValueError(1), KeyError(2)
    raised: list[BaseException] = []

    def raising(err: BaseException) -> Consumer:
        # ASYNC124: raises at once, before any checkpoint, so that both errors happen
        # before either can cancel the other
        async def consume(view: bt.Stream[int]) -> None:  # noqa: ASYNC124
            raised.append(err)
            raise err

        return consume

    with no_leaks():
        exc = await raised_by(
            lambda: bt.fan_out(ScriptedProducer.counting().stream(), raising(e1), raising(e2))
        )
    leaves = reachable(exc)
    assert raised
    for err in raised:
        assert contains_identical(leaves, err), f"{err!r} was lost: {exc!r}"
    if len(raised) == 1:
        assert exc is raised[0]
    else:
        assert isinstance(exc, BaseExceptionGroup)


# --------------------------------------------------------------------------------------------
# Go FanOut: deadlock when drained one after another; leaked goroutines; cancellation that
# looks like the end (docs/design.md, "Bugs of the prior art")
# --------------------------------------------------------------------------------------------


PACES: dict[str, list[Consumer]] = {
    "same-pace": [sleepy(0.1), sleepy(0.1), sleepy(0.1)],
    "different-paces": [sleepy(0.0), sleepy(0.3), sleepy(1.0), sleepy(0.05)],
    "late-starters": [sleepy(0.1, before=5), sleepy(0.2, before=1), collect],
    "one-after-another": [sleepy(0.1, before=0), sleepy(0.1, before=20), sleepy(0.1, before=40)],
}


@pytest.mark.parametrize("n", [16, 17, 100])
@pytest.mark.parametrize("name", list(PACES), ids=list(PACES))
async def test_consumers_that_each_drain_fully_cannot_deadlock(
    autojump_clock: trio.testing.MockClock, name: str, n: int
) -> None:
    consumers = PACES[name]
    probe = ScriptedProducer.counting(n, delay=0.01)
    with no_leaks(), trio.fail_after(10_000):
        results = await bt.fan_out(probe.stream(), *consumers, capacity=1)
    assert results == [list(range(n))] * len(consumers)
    assert probe.started == n


async def test_one_task_draining_two_views_one_after_another_raises_instead_of_hanging(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The Go FanOut deadlock written with views: one consumer drains another consumer's
    view fully, then its own. With bounded buffers the distributor must wait for the second
    view, which is read only after the first has ended. The issue asks a pull-style broadcast
    to raise a clear error here instead of hanging."""
    views: list[bt.Stream[int]] = []
    done = trio.Event()

    async def lender(view: bt.Stream[int]) -> None:
        views.append(view)
        await done.wait()

    async def drainer(view: bt.Stream[int]) -> tuple[list[int], list[int]]:
        await trio.lowlevel.checkpoint()
        first = await views[0].collect()
        second = await view.collect()
        done.set()
        return first, second

    async def run() -> list[Any]:
        with trio.fail_after(100):
            return await bt.fan_out(
                ScriptedProducer.counting(16).stream(), lender, drainer, capacity=1
            )

    exc = await raised_by(run)
    assert not isinstance(exc, trio.TooSlowError), "hung like the Go FanOut"
    assert isinstance(exc, RuntimeError), repr(exc)
    assert "outside its consumer" in str(exc)


async def test_a_view_may_be_read_by_a_task_its_consumer_starts() -> None:
    async def in_a_child_task(view: bt.Stream[int]) -> list[int]:
        got: list[int] = []

        async def read() -> None:
            got.extend(await view.collect())

        # ASYNC112: the point is that a child task of the consumer reads the view
        async with trio.open_nursery() as nursery:  # noqa: ASYNC112
            nursery.start_soon(read)
        return got

    assert await bt.fan_out(bt.from_iterable(range(5)), in_a_child_task) == [[0, 1, 2, 3, 4]]


async def test_cancelling_fan_out_stops_everything_and_is_not_a_clean_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(delay=1)
    outcomes = [Outcome(), Outcome()]
    after = False
    state = ExitState()
    before = tasks_living()
    with trio.move_on_after(3.5) as cs:
        try:
            await bt.fan_out(probe.stream(), recording(outcomes[0]), recording(outcomes[1], 0.5))
        finally:
            state.record([probe])
        after = True
    assert cs.cancelled_caught
    assert not after
    assert state.finalized == [1]
    assert state.tasks == before
    for outcome in outcomes:
        assert outcome.cancelled
        assert not outcome.after_loop
        assert outcome.items == [0, 1, 2]


async def test_cancelling_a_fan_out_blocked_on_a_full_buffer_stops_it() -> None:
    probe = ScriptedProducer.counting()
    state = ExitState()
    before = tasks_living()

    started_when_blocked = -1

    async def stuck(view: bt.Stream[int]) -> None:
        await trio.sleep_forever()

    with trio.CancelScope() as cs:

        async def cancel_soon() -> None:
            nonlocal started_when_blocked
            # (a deadline, so that an unbounded buffer fails the test instead of hanging it)
            with trio.move_on_after(5):
                await trio.testing.wait_all_tasks_blocked()
            started_when_blocked = probe.started
            cs.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            try:
                await bt.fan_out(probe.stream(), stuck, collect, capacity=3)
            finally:
                state.record([probe])
    assert cs.cancelled_caught
    assert 3 <= started_when_blocked <= 3 + 1, "the source was not held back by the buffer"
    assert state.finalized == [1]
    assert tasks_living() == before


@pytest.mark.parametrize("trigger", ["outer-cancel", "source-error", "consumer-error"])
async def test_a_shielded_consumer_does_not_see_a_clean_end_when_fan_out_stops(
    autojump_clock: trio.testing.MockClock, trigger: str
) -> None:
    """A consumer that shields its reading (to finish a write, say) while ``fan_out`` is
    cancelled (by the enclosing scope, or by an error elsewhere) must not see its view end as
    if the source had finished."""
    looked_complete: list[list[int]] = []
    err = ValueError("boom")

    view_errors: list[BaseException] = []

    async def shielded(view: bt.Stream[int]) -> list[int]:
        with trio.CancelScope(shield=True):
            try:
                items = await view.collect()
            except (trio.BrokenResourceError, ValueError) as exc:
                # an error that says the view cannot go on, or the source's own: fine
                view_errors.append(exc)
                return []
            looked_complete.append(items)
            return items
        return []  # pragma: no cover - a shielded scope catches nothing here

    async def failing_consumer(view: bt.Stream[int]) -> None:
        await trio.sleep(3.5)
        raise err

    probe = (
        ScriptedProducer(range(3), raise_before=3, error=err, delay=1, cleanup_checkpoints=0)
        if trigger == "source-error"
        else ScriptedProducer.counting(10, delay=1)
    )
    source = probe.stream()
    others = [failing_consumer] if trigger == "consumer-error" else [collect]
    if trigger == "outer-cancel":
        with trio.move_on_after(3.5) as cs:
            await bt.fan_out(source, shielded, *others)
        assert cs.cancelled_caught
    else:
        assert await raised_by(lambda: bt.fan_out(source, shielded, *others)) is err
    assert looked_complete == [], f"the view ended cleanly after {looked_complete}"
    assert all(isinstance(e, trio.BrokenResourceError) or e is err for e in view_errors)
    assert probe.cleanups == 1


@pytest.mark.parametrize("buffer", [1, 4])
async def test_a_timed_out_anext_on_a_view_loses_no_item(
    autojump_clock: trio.testing.MockClock, buffer: int
) -> None:
    delays = [0.5, 2, 0.1, 3, 0, 0, 1.5, 4, 0.2, 2]
    cancelled = 0

    async def impatient(view: bt.Stream[str]) -> list[str]:
        nonlocal cancelled
        async with view.open() as it:
            got, cancelled = await drain_with_timeouts(it, 1.0)
        return got

    async def plain(view: bt.Stream[str]) -> list[str]:
        return await view.collect()

    with no_leaks():
        results = await bt.fan_out(
            ScriptedProducer(
                [f"{i}" for i in range(len(delays))], delay=delays, cleanup_checkpoints=0
            ).stream(),
            impatient,
            plain,
            capacity=buffer,
        )
    expected = [str(i) for i in range(len(delays))]
    assert results == [expected, expected]
    assert cancelled >= 3


# --------------------------------------------------------------------------------------------
# The shared ring (issue 18): capacity exact, hand-over in chunks, one wake-up per half buffer
# --------------------------------------------------------------------------------------------


class _Steps(trio.abc.Instrument):
    """Counts the steps of the tasks whose name starts with a prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith(self.prefix):
            self.steps += 1


def _reads(log: list[int], n: int | None = None) -> Any:
    i = 0
    while n is None or i < n:
        log.append(i)
        yield i
        i += 1


@pytest.mark.parametrize("capacity", [1, 2, 7, 64])
@pytest.mark.parametrize("sync_source", [True, False], ids=["sync-source", "async-source"])
async def test_the_source_is_read_exactly_capacity_ahead_of_a_consumer_that_waits(
    capacity: int, sync_source: bool
) -> None:
    """The distributor waits for room before it takes an item: while one consumer reads
    nothing, exactly ``capacity`` items are taken from the source, none held in hand."""
    reads: list[int] = []
    release = trio.Event()
    read_while_blocked = -1

    async def stuck(view: bt.Stream[int]) -> int:
        await release.wait()
        return len(await view.collect())

    async def watcher(view: bt.Stream[int]) -> int:
        nonlocal read_while_blocked
        await trio.testing.wait_all_tasks_blocked()
        read_while_blocked = len(reads)
        release.set()
        return len(await view.collect())

    source = bt.from_iterable(_reads(reads, 300))
    if not sync_source:
        source = source.map(_async_identity)
    with no_leaks():
        assert await bt.fan_out(source, stuck, watcher, capacity=capacity) == [300, 300]
    assert read_while_blocked == capacity


async def _async_identity(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x


async def test_ready_items_are_handed_over_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer draining its view (``reduce``) takes every item that is ready at once: one
    call per chunk, and its task runs about once per chunk, not once per item."""
    n = 20_000
    calls = 0
    view_pull: type[_fanout._ViewPull[int]] = _fanout._ViewPull
    pull_some = view_pull.pull_some

    async def counted(self: Any) -> Any:
        nonlocal calls
        calls += 1
        return await pull_some(self)

    monkeypatch.setattr(_fanout._ViewPull, "pull_some", counted)
    steps = _Steps("beluga_trio fan_out consumer")
    trio.lowlevel.add_instrument(steps)
    try:
        results = await bt.fan_out(bt.from_iterable(range(n)), _total, _total, _total)
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert results == [sum(range(n))] * 3
    assert calls <= 3 * n // 64, f"{calls} pull_some calls for {n} items"
    assert steps.steps <= 3 * n // 64, f"{steps.steps} consumer steps for {n} items"


async def _total(view: bt.Stream[int]) -> int:
    return await view.reduce(lambda a, x: a + x, 0)


@pytest.mark.parametrize("capacity", [16, 64])
async def test_a_full_buffer_wakes_the_source_once_per_half_buffer(capacity: int) -> None:
    """The consumer that sets the pace reads an item per schedule point; the distributor
    waits until every view is down to half its capacity, so it runs about once per
    ``capacity / 2`` items rather than once per item."""
    n = 4_000
    worst_lag = 0
    reads: list[int] = []

    async def slow(view: bt.Stream[int]) -> int:
        nonlocal worst_lag
        seen = 0
        async with view.open() as it:
            async for _ in it:
                seen += 1
                worst_lag = max(worst_lag, len(reads) - seen)
                await trio.lowlevel.checkpoint()
        return seen

    steps = _Steps("beluga_trio fan_out source")
    trio.lowlevel.add_instrument(steps)
    try:
        results = await bt.fan_out(
            bt.from_iterable(_reads(reads, n)), slow, _total, capacity=capacity
        )
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert results == [n, sum(range(n))]
    assert worst_lag == capacity - 1  # the buffer is used, and never more than it
    assert steps.steps <= 2 * n // (capacity // 2), f"{steps.steps} source steps for {n} items"


@pytest.mark.parametrize("capacity", [1, 3, 1024])
async def test_ready_items_of_an_async_source_are_distributed_in_chunks(
    monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    """Over an async source that holds ready items (a buffer), the distributor takes every
    ready item the room allows before it wakes the views: far fewer hand-overs than items,
    never more than ``capacity`` at once, every item in order."""
    n = 5_000
    chunks: list[int] = []
    ring: type[_fanout._Ring[int]] = _fanout._Ring
    put = ring.put

    def counted(self: Any, chunk: Any) -> None:
        chunks.append(len(chunk))
        put(self, chunk)

    monkeypatch.setattr(_fanout._Ring, "put", counted)
    source = bt.from_iterable(range(n)).buffer(256)
    with no_leaks():
        results = await bt.fan_out(source, collect, sleepy(0), capacity=capacity)
    assert results == [list(range(n))] * 2
    assert sum(chunks) == n
    assert max(chunks) <= capacity
    if capacity > 1:
        assert len(chunks) <= n // 2, f"{len(chunks)} hand-overs for {n} items"


@pytest.mark.parametrize("capacity", [1, 1024])
async def test_an_error_among_ready_items_of_an_async_source_arrives_as_itself(
    capacity: int,
) -> None:
    err = ValueError("at 300")

    def check(x: int) -> int:
        if x == 300:
            raise err
        return x

    seen: list[list[int]] = [[], []]

    def keeping(index: int) -> Consumer:
        async def consume(view: bt.Stream[int]) -> None:
            await view.for_each(seen[index].append)

        return consume

    source = bt.from_iterable(range(1000)).map(check).buffer(64)
    with no_leaks():
        assert await raised_by(lambda: bt.fan_out(source, keeping(0), keeping(1))) is err
    for got in seen:
        assert got == list(range(len(got)))


@pytest.mark.parametrize("buffered", [False, True], ids=["sync-source", "buffered-source"])
async def test_cancelled_at_every_step_through_the_ring_loses_and_leaks_nothing(
    buffered: bool,
) -> None:
    """A sweep through the ring's own paths: a full ring (capacity 4) waiting for a slow view
    down to half, chunks handed over, an early return, items polled from a buffered source.
    Cancelled before any step, nothing is left running, and every view saw a prefix in order
    (all of it when the run completed)."""
    n = 30
    seen: dict[str, list[int]] = {}

    def keeping(name: str, *, slow: bool = False, stop_after: int | None = None) -> Consumer:
        async def consume(view: bt.Stream[int]) -> None:
            got = seen[name] = []
            async with view.open() as it:
                async for x in it:
                    got.append(x)
                    if slow:
                        await trio.lowlevel.checkpoint()
                    if len(got) == stop_after:
                        break

        return consume

    async def drained(view: bt.Stream[int]) -> None:
        got = seen["drained"] = []
        await view.for_each(got.append)

    async def scenario() -> None:
        seen.clear()
        source = bt.from_iterable(range(n))
        if buffered:
            source = source.buffer(8)
        await bt.fan_out(
            source, keeping("slow", slow=True), drained, keeping("early", stop_after=5), capacity=4
        )

    def check(run: SweepRun) -> None:
        for got in seen.values():
            assert got == list(range(len(got))), f"a view lost or reordered items: {got}"
        if run.outcome == "completed":
            assert {name: len(got) for name, got in seen.items()} == {
                "slow": n,
                "drained": n,
                "early": 5,
            }

    report = await cancel_sweep(scenario, check=check)
    assert report.cancellation_points > 20
