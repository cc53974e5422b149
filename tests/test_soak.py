"""Soak: a million items through pipelines of every stage, left early and cancelled at random.

Rounds follow one another in one ``trio.run`` (virtual clock). Each round builds a pipeline
over fresh `ScriptedProducer` sources (up to a few thousand items each), in one of five shapes
that together use every stage (map sync and async, filter, skip, take, buffer with each
overflow policy, merge, concurrent map ordered and unordered, batch, timeout, fan_out and every
terminal operation), and leaves it in a random way: read to the end, ``break``, a cancelled
scope, an exception of the consumer's, or a timeout that expires. After every round: the items
delivered are the expected ones (a prefix, per source for merges, a subsequence for the drop
policies), every producer ran its cleanup and stayed lock-step, and no task or async generator
is left (``no_leaks``). Memory is traced (tracemalloc) and must not grow: the traced memory
after the last round is within a small margin of what it was after the first tenth.

``test_soak`` (a million items; tracemalloc makes it several times slower, a few minutes) is
behind the ``soak`` marker, excluded from the default run; ``test_soak_tiny`` runs the same
code over 6,000 items (smaller sources, so every shape and exit still occurs) by default.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.testing import ScriptedError, ScriptedProducer, assert_prefix, no_leaks

T = TypeVar("T")


def _soak_marker() -> pytest.MarkDecorator:
    try:
        return pytest.mark.soak
    except pytest.fail.Exception:  # not registered in pyproject.toml (--strict-markers)
        return pytest.mark.skip(reason="register the `soak` marker to run the soak")


SOAK = _soak_marker()


class ConsumerError(Exception):
    pass


Leave = Literal["end", "break", "cancel", "raise", "collect", "reduce", "for_each", "first"]
LEAVES: list[Leave] = ["end", "break", "cancel", "raise", "collect", "reduce", "for_each", "first"]


@dataclass
class Figures:
    items: int = 0  # items the producers yielded into the pipelines
    rounds: int = 0
    shapes: Counter[str] = field(default_factory=Counter[str])
    leaves: Counter[str] = field(default_factory=Counter[str])
    seconds: float = 0.0
    # (items so far, traced memory now, peak traced memory since the previous mark)
    memory: list[tuple[int, int, int]] = field(default_factory=list[tuple[int, int, int]])


@dataclass
class Round:
    rng: random.Random
    size: int  # the most items one source produces
    fakes: list[ScriptedProducer[int]] = field(default_factory=list[ScriptedProducer[int]])

    def source(
        self,
        n: int,
        first: int = 0,
        *,
        raise_before: int | None = None,
        hang_before: int | None = None,
    ) -> bt.Stream[int]:
        fake = ScriptedProducer(
            range(first, first + n), raise_before=raise_before, hang_before=hang_before
        )
        self.fakes.append(fake)
        return fake.stream()

    def produced(self) -> int:
        return sum(len(run.yielded) for fake in self.fakes for run in fake.runs)

    def check_producers(self) -> None:
        for fake in self.fakes:
            fake.assert_cleaned_up()
            fake.assert_lock_step()


async def same(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x


async def consume(stream: bt.Stream[T], leave: Leave, after: int) -> list[T]:
    """Read ``stream`` and leave as ``leave`` says, after ``after`` items."""
    if leave == "collect":
        return await stream.collect()
    if leave == "reduce":

        def last_three(acc: list[T], x: T) -> list[T]:
            return [*acc[-2:], x]

        return await stream.reduce(last_three, [])
    if leave == "for_each":
        got: list[T] = []
        await stream.for_each(got.append)
        return got
    if leave == "first":
        try:
            return [await stream.first()]
        except bt.EmptyStreamError:
            return []
    got = []
    error = ConsumerError()
    caught: ConsumerError | None = None
    with trio.CancelScope() as scope:
        try:
            async with stream.open() as items:
                while leave == "end" or len(got) < after:
                    try:
                        got.append(await anext(items))
                    except StopAsyncIteration:
                        break
                else:
                    if leave == "raise":
                        raise error
                    if leave == "cancel":
                        scope.cancel()
                        await anext(items)  # raises Cancelled
                        raise AssertionError("a cancelled stream went on")
        except ConsumerError as raised:
            caught = raised
    assert caught is (error if leave == "raise" and len(got) == after else None)
    if scope.cancelled_caught:
        assert len(got) == after
    return got


def check_delivered(got: Sequence[int], expected: Sequence[int], leave: Leave) -> None:
    if leave == "reduce":
        assert list(got) == list(expected[-3:])
    elif leave == "first":
        assert list(got) == list(expected[:1])
    else:
        assert_prefix(got, expected)
        if leave in ("end", "collect", "for_each"):
            assert len(got) == len(expected)


# ------------------------------------------------------------------------------ shapes


async def linear(r: Round, leave: Leave, after: int) -> None:
    """Every sequential stage and an ordered concurrent map, behind a buffer."""
    rng = r.rng
    n, k, cap = rng.randint(0, r.size), rng.randint(0, 30), rng.randint(1, 64)
    conc, size = rng.randint(1, 8), rng.randint(1, 16)
    take = rng.randint(0, n + 10)
    stream = (
        r.source(n)
        .map(lambda x: x + 1)
        .map(same)
        .filter(lambda x: x % 7 != 3)
        .skip(k)
        .buffer(cap)
        .map(same, concurrency=conc, ordered=True)
        .batch(size)
        .timeout(between=30)
        .map(sum)
        .take(take)
    )
    values = [x + 1 for x in range(n) if (x + 1) % 7 != 3][k:]
    expected = [sum(values[i : i + size]) for i in range(0, len(values), size)][:take]
    check_delivered(await consume(stream, leave, after), expected, leave)


async def merged(r: Round, leave: Leave, after: int) -> None:
    """Two to three sources merged, then a concurrent map in input or completion order."""
    rng = r.rng
    sizes = [rng.randint(0, r.size // 2) for _ in range(rng.randint(2, 3))]
    sources = [r.source(n, first=100_000 * i) for i, n in enumerate(sizes)]
    ordered = rng.random() < 0.5
    stream = bt.merge(*sources, capacity=rng.randint(1, 64)).map(
        same, concurrency=rng.randint(1, 8), ordered=ordered
    )
    got = await consume(stream, leave, after)
    if leave in ("reduce", "first"):
        return  # which items come last or first depends on the arrival order
    assert len(set(got)) == len(got), "an item was duplicated"
    for i, n in enumerate(sizes):
        mine = [x for x in got if x // 100_000 == i]
        if ordered:
            assert_prefix(mine, range(100_000 * i, 100_000 * i + n))
        else:
            assert set(mine) <= set(range(100_000 * i, 100_000 * i + n))
    if leave in ("end", "collect", "for_each"):
        assert len(got) == sum(sizes)


async def dropping(r: Round, leave: Leave, after: int) -> None:
    """A buffer that drops, in front of a slower consumer: an ordered subsequence."""
    rng = r.rng
    n = rng.randint(0, r.size)
    overflow: bt.Overflow = rng.choice(["drop_oldest", "drop_newest"])
    stream = r.source(n).buffer(rng.randint(1, 32), overflow=overflow).map(same).map(same)
    got = await consume(stream, leave, after)
    assert got == sorted(set(got)), "not an ordered subsequence"
    assert set(got) <= set(range(n))


async def fanned(r: Round, leave: Leave, after: int) -> None:
    """fan_out to a reader of everything, one that returns early, and a reducer."""
    rng = r.rng
    n, stop = rng.randint(0, r.size), rng.randint(0, 50)

    async def everything(view: bt.Stream[int]) -> list[int]:
        return await consume(view, leave, after)

    async def early(view: bt.Stream[int]) -> list[int]:
        return await view.take(stop).collect()

    async def total(view: bt.Stream[int]) -> int:
        return await view.reduce(lambda acc, x: acc + x, 0)

    source = r.source(n).buffer(rng.randint(1, 16))
    views = await bt.fan_out(source, everything, early, total, capacity=rng.randint(1, 64))
    seen, head, added = views
    assert isinstance(seen, list)
    check_delivered(seen, range(n), leave)
    assert head == list(range(min(n, stop)))
    assert added == sum(range(n))


async def timing_out(r: Round, leave: Leave, after: int) -> None:
    """A producer that hangs at a random item behind a timeout (TooSlowError after the items
    before it), or one that fails there. Lock-step, so leaving before that item never
    reaches it."""
    rng = r.rng
    n = rng.randint(1, r.size)
    at = rng.randint(0, n - 1)
    if rng.random() < 0.5:
        stream = r.source(n, hang_before=at).map(same).timeout(first=1, between=1)
        failure: type[Exception] = trio.TooSlowError
    else:
        stream = r.source(n, raise_before=at).map(same).filter(lambda x: x >= 0)
        failure = ScriptedError
    try:
        got = await consume(stream, leave, after)
    except failure:
        assert leave not in ("break", "raise", "cancel") or after >= at
        assert r.fakes[0].last.started == at + 1
        return
    assert leave in ("break", "raise", "cancel", "first")
    check_delivered(got, range(at), leave)


Shape = Callable[[Round, Leave, int], Awaitable[None]]
SHAPES: dict[str, Shape] = {
    "linear": linear,
    "merged": merged,
    "dropping": dropping,
    "fanned": fanned,
    "timing_out": timing_out,
}


# ------------------------------------------------------------------------------- driver


async def soak(total: int, seed: int, figures: Figures) -> None:
    rng = random.Random(seed)
    baseline = trio.lowlevel.current_statistics().tasks_living
    marks = [total // 10, total]
    start = time.perf_counter()
    size = max(10, min(4000, total // 250))
    while figures.items < total:
        r = Round(rng, size)
        name = rng.choice(list(SHAPES))
        leave = rng.choice(LEAVES)
        with trio.fail_after(10_000), no_leaks():  # virtual seconds: a hang fails at once
            await SHAPES[name](r, leave, rng.randint(0, size))
        r.check_producers()
        assert trio.lowlevel.current_statistics().tasks_living == baseline
        figures.items += r.produced()
        figures.rounds += 1
        figures.shapes[name] += 1
        figures.leaves[leave] += 1
        if marks and figures.items >= marks[0]:
            marks.pop(0)
            del r
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            figures.memory.append((figures.items, current, peak))
            tracemalloc.reset_peak()
    figures.seconds = time.perf_counter() - start


def run_soak(total: int, seed: int) -> Figures:
    figures = Figures()
    gc.collect()
    tracemalloc.start()
    try:
        trio.run(soak, total, seed, figures, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        tracemalloc.stop()
    (_, tenth, peak_tenth), (_, last, peak_rest) = figures.memory
    # Flat: what is still allocated at the end is what was allocated after a tenth of the
    # items, within a margin for interpreter caches. The peaks are set by the largest round
    # (sources of at most 4,000 items), not by the length of the stream.
    assert last - tenth < 512 * 1024, f"memory grew by {(last - tenth) / 1024:.0f} KiB"
    assert max(peak_tenth, peak_rest) < 16 * 1024 * 1024, "a round held too much at once"
    return figures


def describe(figures: Figures) -> str:
    (n1, current1, peak1), (n2, current2, peak2) = figures.memory
    return (
        f"{figures.items:,} items in {figures.rounds:,} rounds, {figures.seconds:.1f} s; "
        f"traced memory after {n1:,} items: {current1 / 1024:.0f} KiB (peak "
        f"{peak1 / 1024:.0f} KiB); after {n2:,}: {current2 / 1024:.0f} KiB (peak since "
        f"{peak2 / 1024:.0f} KiB); shapes {dict(figures.shapes)}; exits {dict(figures.leaves)}"
    )


def test_soak_tiny() -> None:
    figures = run_soak(6_000, seed=1)
    assert figures.items >= 6_000
    assert set(figures.shapes) == set(SHAPES)


@SOAK
def test_soak(capsys: pytest.CaptureFixture[str]) -> None:
    figures = run_soak(1_000_000, seed=2024)
    with capsys.disabled():
        print("\nsoak:", describe(figures))
    assert set(figures.leaves) == set(LEAVES)
