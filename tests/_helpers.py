"""Helpers for the black-box tests that the public toolkit (`beluga_trio.testing`) does not
provide, and should not (public API of ``beluga_trio`` only).

Use the toolkit first: ``no_leaks()`` for a leak check, ``ScriptedProducer`` (``counting`` for
the plain one) for a producer whose items and cleanup a test counts, ``cancel_sweep`` and
``assert_prefix``. What is left here is specific to this suite:

* producers the toolkit's scripted one cannot be, because doing it is what they test: they hold a
  cancel scope or a nursery across ``yield``, or await in ``finally`` and record how it went
  (the contract says a ``@bt.stream`` body may do that), and the `Probe` those and the tests'
  own inline producers count in;
* ``raised_by``: what an awaitable raised, as an expression (``assert await raised_by(f) is
  err``), any `BaseException` included, for the "arrives as itself" checks (``pytest.raises``
  needs a block, and ruff's PT011 rightly refuses its ``BaseException`` form elsewhere);
* ``tasks_living``: trio's task count at one instant, which `ExitState` records at the moment a
  block exits (``no_leaks()`` checks at the end of its own block, a different instant);
* exception-graph and channel helpers, ``drain_with_timeouts`` and ``Watchdog``.

The producers below hold a cancel scope or a nursery across ``yield`` and await in ``finally``
on purpose. flake8-async warns about those patterns (ASYNC101/102/119); the ``# noqa`` comments
silence it and the file-level ruff directive keeps ruff from objecting to codes it does not
know or does not enable.
"""

# ruff: noqa: RUF100, RUF102

import itertools
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from dataclasses import dataclass
from typing import TypeVar, cast

import trio

import beluga_trio as bt

T = TypeVar("T")


def tasks_living() -> int:
    """How many trio tasks are alive right now (all of them, system tasks included)."""
    return trio.lowlevel.current_statistics().tasks_living


@dataclass
class Probe:
    """Side-effect counters written by test producers."""

    entered: int = 0  # producer bodies entered
    started: int = 0  # items whose computation began (incremented before any await)
    produced: int = 0  # items about to be yielded (incremented right before `yield`)
    finalized: int = 0  # `finally` blocks of producers that ran


async def raised_by(fn: Callable[[], Awaitable[object]]) -> BaseException:
    """Run ``fn`` and return what it raised (anything, even Cancelled); fail if it returned."""
    try:
        result = await fn()
    except BaseException as exc:  # noqa: ASYNC103, BLE001
        return exc  # noqa: ASYNC104
    raise AssertionError(f"nothing was raised, returned {result!r}")


def reachable(exc: BaseException) -> list[BaseException]:
    """Every exception reachable from ``exc`` via group members, __cause__ and __context__."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(cast("BaseExceptionGroup[BaseException]", current).exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        if current.__context__ is not None:
            todo.append(current.__context__)
    return seen


def contains_identical(excs: list[BaseException], target: BaseException) -> bool:
    return any(e is target for e in excs)


async def drain_with_timeouts(it: AsyncIterator[T], patience: float) -> tuple[list[T], int]:
    """Receive everything from ``it``, each item first asked for with ``move_on_after(patience)``.

    When that request is cancelled by the timeout, the item is asked for again without a
    timeout (so the loop always makes progress). Returns the items and how many requests
    were cancelled.
    """
    received: list[T] = []
    cancelled = 0
    done = False
    while not done:
        with trio.move_on_after(patience) as cs:
            try:
                received.append(await anext(it))
            except StopAsyncIteration:
                done = True
        if cs.cancelled_caught:
            cancelled += 1
            try:
                received.append(await anext(it))
            except StopAsyncIteration:
                done = True
    return received, cancelled


class PlainReceiveChannel(trio.abc.ReceiveChannel[T]):
    """A `trio.abc.ReceiveChannel` that is not a memory channel (it wraps one), to exercise
    ``from_channel`` on a generic channel."""

    def __init__(self, inner: trio.MemoryReceiveChannel[T]) -> None:
        self.inner = inner
        self.closed = False

    async def receive(self) -> T:
        if self.closed:
            raise trio.ClosedResourceError
        return await self.inner.receive()

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


def receive_side(kind: str, rx: trio.MemoryReceiveChannel[T]) -> trio.abc.ReceiveChannel[T]:
    """``rx`` itself (``kind == "memory"``) or a generic channel wrapping it."""
    return rx if kind == "memory" else PlainReceiveChannel(rx)


CHANNEL_KINDS = ["memory", "generic"]


class Watchdog:
    """A map fn / filter predicate that fails loudly instead of letting a test hang forever.

    Pipelines that are expected to be cancelled by a short deadline run it on every item; if
    the pipeline was not cancelled within ``limit`` wall-clock seconds it raises AssertionError.
    """

    def __init__(self, limit: float = 5.0) -> None:
        self.limit = limit
        self.calls = 0
        self.t0 = time.monotonic()

    def check(self) -> None:
        self.calls += 1
        if self.calls % 512 == 0 and time.monotonic() - self.t0 > self.limit:
            raise AssertionError(f"pipeline not cancelled within {self.limit} s")

    def plus_one(self, x: int) -> int:
        self.check()
        return x + 1

    def reject(self, x: int) -> bool:
        self.check()
        return False

    def count(self) -> Iterator[int]:
        """Like ``itertools.count()`` (a one-shot iterator), but watched."""
        for i in itertools.count():
            self.check()
            yield i


# --------------------------------------------------------------------------------------------
# Producers that hold a cancel scope / nursery across `yield`, or await in `finally`
# --------------------------------------------------------------------------------------------


def scope_holding_producer(probe: Probe) -> bt.Stream[int]:
    """``0..4``, one per second, every ``yield`` inside ``move_on_after(100)``."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            with trio.move_on_after(100):
                for i in range(5):
                    await trio.sleep(1)
                    yield i  # noqa: ASYNC101, ASYNC119
        finally:
            probe.finalized += 1

    return produce()


def nursery_holding_producer(probe: Probe) -> bt.Stream[int]:
    """``0..4``, one per second, every ``yield`` inside a nursery with a background task."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        probe.entered += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                for i in range(5):
                    await trio.sleep(1)
                    yield i  # noqa: ASYNC101, ASYNC119
                nursery.cancel_scope.cancel()
        finally:
            probe.finalized += 1

    return produce()


def ticking_until(seconds: float) -> bt.Stream[int]:
    """Yields 0, 1, ... once a second inside ``move_on_after(seconds)``, then -1."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        i = 0
        with trio.move_on_after(seconds):
            while True:
                await trio.sleep(1)
                yield i  # noqa: ASYNC101, ASYNC119
                i += 1
        yield -1

    return produce()


def squares_from_worker(n: int) -> bt.Stream[int]:
    """``i * i`` for ``i < n``, computed by a task of a nursery the producer holds."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        tx, rx = trio.open_memory_channel[int](0)

        async def worker() -> None:
            async with tx:
                for i in range(n):
                    await trio.sleep(1)
                    await tx.send(i * i)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            async with rx:
                async for x in rx:
                    yield x  # noqa: ASYNC101, ASYNC119

    return produce()


class CleanupRecord:
    """What an awaiting cleanup saw."""

    def __init__(self) -> None:
        self.ran = False
        self.deadline_ok = False
        self.completed = False
        self.cancelled = False


def awaiting_cleanup_producer(rec: CleanupRecord) -> bt.Stream[int]:
    """``0..9``; its ``finally`` awaits and records whether it ran cancelled."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        try:
            for i in range(10):
                await trio.lowlevel.checkpoint()
                yield i
        finally:
            rec.ran = True
            rec.deadline_ok = trio.current_effective_deadline() > trio.current_time()
            try:
                await trio.lowlevel.checkpoint()  # noqa: ASYNC102
                await trio.lowlevel.checkpoint()  # noqa: ASYNC102
            except trio.Cancelled:
                rec.cancelled = True
                raise
            rec.completed = True

    return produce()


def raising_cleanup(err: BaseException, *, awaiting: bool) -> bt.Stream[int]:
    """``0..4``; its ``finally`` raises ``err`` (after a checkpoint when ``awaiting``)."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        try:
            for i in range(5):
                await trio.lowlevel.checkpoint()
                yield i
        finally:
            if awaiting:
                await trio.lowlevel.checkpoint()  # noqa: ASYNC102
            raise err

    return produce()
