"""Scenario "fan_out by consumers": ``fan_out`` to 1, 10 and 100 consumers, against the same
job hand-written, all in one scenario so that every width runs in the same interleaved rounds.

The job is N *deliveries* (an item seen by one consumer): with C consumers the source is
``range(N // C)`` and each of the C consumer tasks sums every item, as in scenario
"fan_out(3)" (``operator.add`` once per item). The figure is the cost per delivery, task starts
included, so the widths compare directly: a fan-out whose cost grows only with what it
delivers costs about as much per delivery at 100 consumers as at 1.

Hand-written: the code ``fan_out`` replaces, as in scenario "fan_out(3)": a distributor task
feeding one memory channel per consumer and a task per consumer, with the nowait fast paths on
both sides; its channels hold 1024 items, ``fan_out``'s default buffer per consumer. beluga:
``bt.fan_out(source, *consumers)`` over ``bt.from_iterable``, each consumer
``view.reduce(operator.add, 0)``. The reference is the hand-written job with 1 consumer.

Ratios: per delivery, 100 consumers / 1, for both; and beluga / hand-written at each width.
Issue 18 sets no number for fan_out, so these carry no goal. The check: each consumer's sum is
``sum(range(N // C))``.
"""

from __future__ import annotations

import operator
from typing import cast

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Ratio, Scenario
from bench.scenarios.fan_out import distribute_nowait, sum_nowait

WIDTHS = (1, 10, 100)
BUFFER = 1024  # fan_out's default buffer per consumer

add = operator.add

Result = tuple[int, list[int]]
"""What a job returns: its number of consumers and their sums."""


def _consumers(width: int) -> str:
    return f"{width:,} consumer{'s' if width > 1 else ''}"


def hand_label(width: int) -> str:
    return f"hand-written channels(1024), {_consumers(width)}"


def beluga_label(width: int) -> str:
    return f"beluga fan_out, {_consumers(width)}"


def expected(n: int) -> dict[int, list[int]]:
    """Each width's sums: C consumers of ``range(n // C)``."""
    return {w: [sum(range(n // w))] * w for w in WIDTHS}


def check(got: object, expected: object) -> str | None:
    sums = cast("dict[int, list[int]]", expected)
    if not isinstance(got, tuple):
        return f"got a {type(got).__name__}, not a (consumers, sums) pair"
    width, results = cast("Result", got)
    if width not in sums:
        return f"{width} consumers, not one of {WIDTHS}"
    if results != sums[width]:
        return f"the {width} sums are {results[:3]}..., expected {sums[width][:3]}..."
    return None


async def _beluga_sum(view: bt.Stream[int]) -> int:
    return await view.reduce(add, 0)


def load_hand_written(width: int) -> Job:
    async def job(n: int) -> Result:
        results = [0] * width
        channels = [trio.open_memory_channel[int](BUFFER) for _ in range(width)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(distribute_nowait, n // width, [tx for tx, _ in channels])
            for index, (_, rx) in enumerate(channels):
                nursery.start_soon(sum_nowait, rx, results, index)
        return width, results

    return job


def load_beluga(width: int) -> Job:
    consumers = [_beluga_sum] * width

    async def job(n: int) -> Result:
        source = bt.from_iterable(range(n // width))
        return width, await bt.fan_out(source, *consumers, capacity=BUFFER)

    return job


class _Width:
    """One width's loaders (methods, not lambdas in a loop: each keeps its own width)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def hand_written(self) -> Job:
        return load_hand_written(self.width)

    def beluga(self) -> Job:
        return load_beluga(self.width)


_widths = [_Width(w) for w in WIDTHS]
narrow, widest = WIDTHS[0], WIDTHS[-1]

SCENARIO = Scenario(
    name="fan_out by consumers",
    description=(
        "N deliveries: range(N // C) read once, every item summed by each of C = 1, 10, 100"
        " consumer tasks; per delivery, so the widths compare; reference: distributor task +"
        " 1 memory channel(1024) with the nowait fast paths"
    ),
    items=500_000,
    smoke_items=2_000,
    reference=hand_label(narrow),
    contenders=(
        *(Contender(hand_label(w.width), w.hand_written) for w in _widths),
        *(Contender(beluga_label(w.width), w.beluga, note="capacity=1024") for w in _widths),
    ),
    expected=expected,
    check=check,
    ratios=(
        Ratio(
            f"beluga: {_consumers(widest)} / {narrow}, per delivery",
            beluga_label(widest),
            beluga_label(narrow),
        ),
        Ratio(
            f"hand-written: {_consumers(widest)} / {narrow}, per delivery",
            hand_label(widest),
            hand_label(narrow),
        ),
        *(
            Ratio(f"beluga / hand-written, {_consumers(w)}", beluga_label(w), hand_label(w))
            for w in WIDTHS
        ),
    ),
)
