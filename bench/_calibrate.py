"""What trio's basic steps cost on this machine, to read the scenarios' figures against.

Three costs bound what a streaming library on trio can reach, and they differ from machine to
machine as much as the scenarios' figures do, so each run measures them (median of 5, each in
a fresh ``trio.run``) and stores them with its results:

- ``checkpoint_if_cancelled_ns``: one ``await trio.lowlevel.checkpoint_if_cancelled()`` that
  is not cancelled (the loop's own cost subtracted). Every ``anext`` of a beluga stream makes
  one, by contract: an item-by-item consumer can always be cancelled.
- ``scheduler_pass_ns``: one ``await trio.lowlevel.checkpoint()`` with no other task: the task
  goes through the scheduler once. A lock-step hand-over between two tasks needs two per item.
- ``nursery_and_task_ns``: ``async with trio.open_nursery()`` around ``start_soon`` of a task
  that returns at once: the least that a producer running in its own task costs per opening.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import trio

ROUNDS = 5


async def _checkpoint_if_cancelled(n: int) -> float:
    check = trio.lowlevel.checkpoint_if_cancelled
    start = time.perf_counter_ns()
    for _ in range(n):
        await check()
    middle = time.perf_counter_ns()
    for _ in range(n):
        pass
    end = time.perf_counter_ns()
    return ((middle - start) - (end - middle)) / n


async def _scheduler_pass(n: int) -> float:
    checkpoint = trio.lowlevel.checkpoint
    start = time.perf_counter_ns()
    for _ in range(n):
        await checkpoint()
    return (time.perf_counter_ns() - start) / n


class _Task:
    """A task body that returns at once (a method, which keeps flake8-async's "could be sync"
    check off it: it must be an async function to be a task)."""

    @staticmethod
    async def returns() -> None:
        return None


async def _nursery_and_task(n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        async with trio.open_nursery() as nursery:  # noqa: ASYNC112 - the nursery is measured
            nursery.start_soon(_Task.returns)
    return (time.perf_counter_ns() - start) / n


def _median(step: Callable[[int], Awaitable[float]], n: int) -> float:
    return statistics.median(trio.run(step, n) for _ in range(ROUNDS))


def machine_costs(*, smoke: bool) -> dict[str, float]:
    """The three costs, in ns (a smoke run uses a tenth of the iterations)."""
    scale = 10 if smoke else 1
    return {
        "checkpoint_if_cancelled_ns": _median(_checkpoint_if_cancelled, 200_000 // scale),
        "scheduler_pass_ns": _median(_scheduler_pass, 50_000 // scale),
        "nursery_and_task_ns": _median(_nursery_and_task, 5_000 // scale),
    }
