"""A real SIGINT (``signal.raise_signal``) in a producer, in a consumer and during cleanup.

trio installs its SIGINT handler in ``trio.run`` when it runs in the main thread (pytest-trio
runs tests there). The handler raises `KeyboardInterrupt` at once, in the frame that was
running, unless that code is KI-protected (trio's internals): then it is delivered later to
the main task, at a checkpoint. Every ``raise_signal`` below is made from plain user code (a
producer's body, a map function, a fan-out consumer, the consumer's loop, a producer's
``finally``), which is never protected, so the interrupt is raised right there,
deterministically; ``test_trio_owns_sigint`` checks the premise. Each test asserts that it
arrives as a bare `KeyboardInterrupt` (not a group), the very object raised, that every
producer's cleanup ran, and that no task or async generator was left behind.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import pytest
import trio

import beluga_trio as bt
from beluga_trio.testing import no_leaks

Where = Literal["producer", "consumer", "cleanup", "cleanup-while-cancelled", "nowhere"]
WHERE: list[Where] = ["producer", "consumer", "cleanup", "cleanup-while-cancelled"]


@dataclass
class Record:
    entered: int = 0
    finalized: int = 0
    interrupts: list[KeyboardInterrupt] = field(default_factory=list[KeyboardInterrupt])

    def interrupt(self) -> None:
        """Deliver a real SIGINT here and remember the KeyboardInterrupt it raises."""
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as exc:
            self.interrupts.append(exc)
            raise
        raise AssertionError("SIGINT did not raise KeyboardInterrupt here")


def producer(record: Record, where: Where, first: int = 0) -> bt.Stream[int]:
    """``first, ..., first + 4``: interrupts before its third item (``"producer"``) or in its
    ``finally`` (``"cleanup..."``)."""

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        record.entered += 1
        try:
            for i in range(first, first + 5):
                await trio.lowlevel.checkpoint()
                if where == "producer" and i == first + 2:
                    record.interrupt()
                yield i
        finally:
            record.finalized += 1
            if where.startswith("cleanup") and not record.interrupts:
                record.interrupt()

    return produce()


async def same(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x


def plain(r: Record, w: Where) -> bt.Stream[int]:
    return producer(r, w)


def map_filter(r: Record, w: Where) -> bt.Stream[int]:
    return producer(r, w).map(same).filter(lambda x: x >= 0).map(abs)


def buffer(r: Record, w: Where) -> bt.Stream[int]:
    return producer(r, w).buffer(2)


def merge(r: Record, w: Where) -> bt.Stream[int]:
    return bt.merge(producer(r, w), producer(r, "nowhere", first=100))


def concurrent_map(r: Record, w: Where) -> bt.Stream[int]:
    return producer(r, w).map(same, concurrency=2)


def batch_timeout(r: Record, w: Where) -> bt.Stream[int]:
    return producer(r, w).batch(2).map(len).timeout(total=100)


PIPELINES = [plain, map_filter, buffer, merge, concurrent_map, batch_timeout]


async def consume(stream: bt.Stream[int], record: Record, where: Where) -> None:
    """Read ``stream``: interrupt in the loop (``"consumer"``), or leave after two items by
    ``break`` (``"cleanup"``) or by a cancellation (``"cleanup-while-cancelled"``)."""
    with trio.CancelScope() as scope:
        async with stream.open() as items:
            count = 0
            async for _ in items:
                count += 1
                if count == 2:
                    if where == "consumer":
                        record.interrupt()
                    if where == "cleanup":
                        break
                    if where == "cleanup-while-cancelled":
                        scope.cancel()
    raise AssertionError("the interrupt did not arrive")


def check(raised: BaseException, record: Record) -> None:
    assert type(raised) is KeyboardInterrupt, f"not a bare KeyboardInterrupt: {raised!r}"
    assert len(record.interrupts) == 1
    assert raised is record.interrupts[0], "not the KeyboardInterrupt that was raised"
    assert record.entered >= 1
    assert record.finalized == record.entered, "a producer's cleanup did not run"


async def test_trio_owns_sigint() -> None:
    await trio.lowlevel.checkpoint()
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda f: f.__name__)
async def test_sigint_arrives_as_keyboard_interrupt_and_every_cleanup_runs(
    pipeline: Callable[[Record, Where], bt.Stream[int]], where: Where
) -> None:
    record = Record()
    with pytest.raises(KeyboardInterrupt) as info, no_leaks():
        await consume(pipeline(record, where), record, where)
    check(info.value, record)


async def collect(stream: bt.Stream[int]) -> object:
    return await stream.collect()


async def first(stream: bt.Stream[int]) -> object:
    return await stream.first()


async def fold(stream: bt.Stream[int]) -> object:
    return await stream.reduce(lambda acc, x: acc + x, 0)


@pytest.mark.parametrize(
    ("terminal", "where"),
    [(collect, "producer"), (collect, "cleanup"), (first, "cleanup"), (fold, "producer")],
    ids=["collect-producer", "collect-cleanup", "first-cleanup", "reduce-producer"],
)
async def test_sigint_through_a_terminal_operation(
    terminal: Callable[[bt.Stream[int]], Awaitable[object]], where: Where
) -> None:
    record = Record()
    stream = producer(record, where).buffer(2) if where == "producer" else producer(record, where)
    with pytest.raises(KeyboardInterrupt) as info, no_leaks():
        await terminal(stream)
    check(info.value, record)


async def test_sigint_in_a_concurrent_map_function() -> None:
    record = Record()

    async def interrupt_on_3(x: int) -> int:
        await trio.lowlevel.checkpoint()
        if x == 3:
            record.interrupt()
        return x

    with pytest.raises(KeyboardInterrupt) as info, no_leaks():
        await producer(record, "nowhere").map(interrupt_on_3, concurrency=3).collect()
    check(info.value, record)


async def test_sigint_in_a_fan_out_consumer() -> None:
    record = Record()

    async def reads_all(view: bt.Stream[int]) -> list[int]:
        return await view.collect()

    async def interrupts(view: bt.Stream[int]) -> None:
        async with view.open() as items:
            async for x in items:
                if x == 1:
                    record.interrupt()

    with pytest.raises(KeyboardInterrupt) as info, no_leaks():
        await bt.fan_out(producer(record, "nowhere"), reads_all, interrupts)
    check(info.value, record)


async def test_sigint_in_a_fan_out_source() -> None:
    record = Record()

    async def reads_all(view: bt.Stream[int]) -> list[int]:
        return await view.collect()

    with pytest.raises(KeyboardInterrupt) as info, no_leaks():
        await bt.fan_out(producer(record, "producer"), reads_all, reads_all)
    check(info.value, record)
