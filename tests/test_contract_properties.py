"""Property tests (hypothesis, black-box): operators agree with plain list computations, early
exits always stop the producer, and timeouts on ``anext`` never lose or duplicate items.

Each example runs in its own ``trio.run``.
"""

from collections.abc import AsyncGenerator, Callable
from typing import NamedTuple

import trio
import trio.testing
from _helpers import Probe, tasks_living
from hypothesis import given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import no_leaks


class MapOption(NamedTuple):
    name: str
    pure: Callable[[int], int]
    apply: Callable[[bt.Stream[int]], bt.Stream[int]]


class PredOption(NamedTuple):
    name: str
    pure: Callable[[int], bool]
    apply: Callable[[bt.Stream[int]], bt.Stream[int]]


async def _async_inc(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + 1


async def _async_square_mod_7(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x * x % 7


async def _async_positive(x: int) -> bool:
    await trio.lowlevel.checkpoint()
    return x > 0


async def _async_never(x: int) -> bool:
    await trio.lowlevel.checkpoint()
    return False


def _map_option(
    name: str, pure: Callable[[int], int], apply: Callable[[bt.Stream[int]], bt.Stream[int]]
) -> MapOption:
    return MapOption(name, pure, apply)


def _pred_option(
    name: str, pure: Callable[[int], bool], apply: Callable[[bt.Stream[int]], bt.Stream[int]]
) -> PredOption:
    return PredOption(name, pure, apply)


MAPS: list[MapOption] = [
    _map_option("identity", lambda x: x, lambda s: s.map(lambda x: x)),
    _map_option("double", lambda x: 2 * x, lambda s: s.map(lambda x: 2 * x)),
    _map_option("async-inc", lambda x: x + 1, lambda s: s.map(_async_inc)),
    _map_option(
        "async-square-mod-7", lambda x: x * x % 7, lambda s: bt.pipe(s, _async_square_mod_7)
    ),
]

PREDS: list[PredOption] = [
    _pred_option("all", lambda x: True, lambda s: s.filter(lambda x: True)),
    _pred_option("even", lambda x: x % 2 == 0, lambda s: s.filter(lambda x: x % 2 == 0)),
    _pred_option("async-positive", lambda x: x > 0, lambda s: s.filter(_async_positive)),
    _pred_option("async-never", lambda x: False, lambda s: s.filter(_async_never)),
]

SOURCE_KINDS = ["list", "tuple", "iterator", "async-generator", "stream"]


def _source(kind: str, xs: list[int], probe: Probe) -> bt.Stream[int]:
    if kind == "list":
        return bt.from_iterable(xs)
    if kind == "tuple":
        return bt.from_iterable(tuple(xs))
    if kind == "iterator":
        return bt.from_iterable(iter(xs))

    async def produce() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            for x in xs:
                probe.started += 1
                await trio.lowlevel.checkpoint()
                yield x
        finally:
            probe.finalized += 1

    if kind == "async-generator":
        return bt.from_iterable(produce())
    assert kind == "stream"
    return bt.stream(produce)()


def _expected(xs: list[int], f: MapOption, p: PredOption, k: int, n: int) -> list[int]:
    mapped = [f.pure(x) for x in xs]
    return [y for y in mapped if p.pure(y)][k : k + n]


def _pipeline(
    *, kind: str, xs: list[int], probe: Probe, f: MapOption, p: PredOption, k: int, n: int
) -> bt.Stream[int]:
    return p.apply(f.apply(_source(kind, xs, probe))).skip(k).take(n)


ints = st.lists(st.integers(min_value=-50, max_value=50), max_size=30)


@settings(deadline=None, max_examples=150)
@given(
    xs=ints,
    kind=st.sampled_from(SOURCE_KINDS),
    f=st.sampled_from(MAPS),
    p=st.sampled_from(PREDS),
    k=st.integers(min_value=0, max_value=12),
    n=st.integers(min_value=0, max_value=12),
)
def test_pipeline_collect_matches_list_computation(
    *, xs: list[int], kind: str, f: MapOption, p: PredOption, k: int, n: int
) -> None:
    expected = _expected(xs, f, p, k, n)

    async def main() -> None:
        probe = Probe()
        with trio.fail_after(10), no_leaks():
            got = await _pipeline(kind=kind, xs=xs, probe=probe, f=f, p=p, k=k, n=n).collect()
        assert got == expected
        assert probe.finalized == probe.entered
        if kind == "stream":
            assert probe.entered == (1 if n > 0 else 0)

    trio.run(main)


@settings(deadline=None, max_examples=100)
@given(
    xs=ints,
    kind=st.sampled_from(SOURCE_KINDS),
    f=st.sampled_from(MAPS),
    p=st.sampled_from(PREDS),
    k=st.integers(min_value=0, max_value=12),
    n=st.integers(min_value=0, max_value=40),
    m=st.integers(min_value=0, max_value=40),
)
def test_early_break_stops_the_producer(
    *, xs: list[int], kind: str, f: MapOption, p: PredOption, k: int, n: int, m: int
) -> None:
    expected = _expected(xs, f, p, k, n)

    async def main() -> None:
        probe = Probe()
        got: list[int] = []
        before = tasks_living()
        at_exit: list[int] = []
        try:
            with trio.fail_after(10):
                stream = _pipeline(kind=kind, xs=xs, probe=probe, f=f, p=p, k=k, n=n)
                async with stream.open() as it:
                    if m > 0:
                        async for x in it:
                            got.append(x)
                            if len(got) >= m:
                                break
        finally:
            at_exit.extend([probe.entered, probe.finalized, tasks_living()])
        assert got == expected[:m]
        entered, finalized, tasks = at_exit
        assert entered <= 1
        assert finalized == entered, "the producer's finally had not run at exit"
        assert tasks == before, "a task outlived the `async with`"

    trio.run(main)


@settings(deadline=None, max_examples=60)
@given(
    delays=st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.5]), min_size=1, max_size=12),
    patience=st.lists(st.sampled_from([None, 0.0, 0.2, 0.7, 1.5]), min_size=1, max_size=12),
)
def test_timeouts_on_anext_lose_nothing_and_leave_no_credit(
    delays: list[float], patience: list[float | None]
) -> None:
    n = len(delays)

    async def main() -> None:
        probe = Probe()

        @bt.stream
        async def produce() -> AsyncGenerator[int, None]:
            probe.entered += 1
            try:
                for i, delay in enumerate(delays):
                    probe.started += 1
                    if delay:
                        await trio.sleep(delay)
                    yield i
            finally:
                probe.finalized += 1

        received: list[int] = []
        done = False
        step = 0
        with trio.fail_after(10**9), no_leaks():
            async with produce().open() as it:
                while not done:
                    wait = patience[step % len(patience)]
                    step += 1
                    with trio.move_on_after(10**6 if wait is None else wait) as cs:
                        try:
                            received.append(await anext(it))
                        except StopAsyncIteration:
                            done = True
                    if cs.cancelled_caught:
                        await trio.sleep(5)  # not asking: no item beyond the one in flight
                        assert probe.started <= len(received) + 1
                        if step > 4 * n + 8:  # make sure the loop ends
                            try:
                                received.append(await anext(it))
                            except StopAsyncIteration:
                                done = True
                    elif not done:
                        await trio.sleep(5)  # not asking, nothing cancelled: exactly lock-step
                        assert probe.started == len(received)
            assert probe.finalized == 1
        assert received == list(range(n))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
