"""Helpers for the tests of the concurrency stages (buffer, merge, fan_out, concurrent map,
batch). Public API of ``beluga_trio`` only; builds on ``tests/_helpers.py``.

A producer a test counts is a ``beluga_trio.testing.ScriptedProducer`` (for example
``ScriptedProducer(range(n), raise_before=n, error=err, cleanup_checkpoints=0)`` for one that
fails after ``n`` items, or one ``delay`` per item as a list). What is here is specific to these
tests: the errors every "arrives as itself" test raises, an endless *synchronous* source (the
sync fast path, which no ``@stream`` producer takes), the in-flight counter of a concurrent map,
what was true when a block exited, and a bounded ``wait_all_tasks_blocked``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
import trio.testing
from _helpers import Probe, tasks_living

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer

T = TypeVar("T")

# Errors every "arrives as itself" test raises: a plain one, the producer's own group (which
# a nursery or a cancelled cancel scope would copy with split()), and KeyboardInterrupt.
ERRORS: dict[str, Callable[[], BaseException]] = {
    "plain": lambda: ValueError("from the producer"),
    "own-group": lambda: ExceptionGroup("the producer's own", [KeyError("inside")]),
    "keyboard-interrupt": KeyboardInterrupt,
}


def endless_sync(probe: Probe) -> bt.Stream[int]:
    """``0, 1, 2, ...`` from a synchronous generator (no await anywhere), counted in probe."""

    def produce() -> Iterator[int]:
        probe.entered += 1
        try:
            for i in itertools.count():
                probe.started += 1
                probe.produced += 1
                yield i
        finally:
            probe.finalized += 1

    return bt.from_iterable(produce())


@dataclass
class InFlight:
    """Counts the calls of a function running at one moment, and the most ever."""

    now: int = 0
    peak: int = 0
    calls: int = 0
    finished: int = 0
    cancelled: int = 0
    history: list[int] = field(default_factory=list[int])  # `now` after each change

    @contextmanager
    def call(self) -> Generator[None]:
        self.now += 1
        self.calls += 1
        self.peak = max(self.peak, self.now)
        self.history.append(self.now)
        try:
            yield
        except trio.Cancelled:
            self.cancelled += 1
            raise
        else:
            self.finished += 1
        finally:
            self.now -= 1
            self.history.append(self.now)


@dataclass
class ExitState:
    """What was true at the moment an ``async with`` (or ``fan_out``) finished."""

    finalized: list[int] = field(default_factory=list[int])
    tasks: int = -1

    def record(self, producers: Sequence[ScriptedProducer[Any] | Probe]) -> None:
        self.finalized = [
            p.cleanups if isinstance(p, ScriptedProducer) else p.finalized for p in producers
        ]
        self.tasks = tasks_living()


async def cancelled_while_consuming(
    make: Callable[[], bt.Stream[T]], *, cancel_after: int | None = None, deadline: float = 1e9
) -> tuple[list[T], bool, bool]:
    """Consume ``make()`` in ``async with s.open()`` under a cancel scope.

    The scope is cancelled by ``cs.cancel()`` in the loop once ``cancel_after`` items arrived
    (or by its ``deadline``). Returns the items, whether code after the loop ran (it must
    not: cancellation is never a clean end) and whether the scope caught the cancellation.
    """
    got: list[T] = []
    after_loop = False
    with trio.move_on_after(deadline) as cs:
        async with make().open() as it:
            async for x in it:
                got.append(x)
                if cancel_after is not None and len(got) >= cancel_after:
                    cs.cancel()
            after_loop = True
    return got, after_loop, cs.cancelled_caught


async def all_blocked(limit: float = 5.0) -> None:
    """``trio.testing.wait_all_tasks_blocked()``, but fail instead of hanging when the tasks
    never all block within ``limit`` seconds (of the test's clock): a stage that reads ahead
    without bound from an endless source never pauses."""
    with trio.move_on_after(limit):
        await trio.testing.wait_all_tasks_blocked()
        return
    raise AssertionError(f"the tasks did not all block within {limit} s: nothing paused them")
