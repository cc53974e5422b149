"""Scenario "merge by width": ``merge`` of 2, 100 and 1,000 sources, against the same job
hand-written, all in one scenario so that every width runs in the same interleaved rounds.

Every job reads the same N items, ``range(N)`` cut into W consecutive ranges (W = 2, 100,
1,000; N/W items per source), each a synchronous source read by a task of its own, and
collects them all in arrival order. The figure is the cost per item of the whole job (task
starts included: a task per source), so the widths compare directly: a merge that scales
with its width costs about as much per item at 1,000 sources as at 2.

Hand-written: the code `merge` replaces, as in scenario "merge(3)": a nursery, a producer task
per source and one ``trio.open_memory_channel(64)`` with the nowait fast paths on both sides.
beluga: ``bt.merge(*sources).collect()`` over ``bt.from_iterable`` sources, its buffer of 64
(the default) the same as the channel's. The reference is the hand-written job at 2 sources.

Ratios (issue 18): per item, width 1,000 / width 2, for both (goal for beluga: at most 2x);
and beluga / hand-written at each width (goal: at most 1x, no slower than the hand-written code
at any width). The check: the items, sorted, are ``range(N)``, and each of the 1,000 ranges of
the finest cut arrives in its order (the sources of a coarser cut are unions of these).
"""

from __future__ import annotations

import bisect
from typing import cast

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Ratio, Scenario
from bench.scenarios._common import receive_all_nowait, send_all_nowait, split

WIDTHS = (2, 100, 1_000)
CAPACITY = 64  # the hand-written channel's, and merge's default buffer


def hand_label(width: int) -> str:
    return f"hand-written nursery + channel(64), {width:,} sources"


def beluga_label(width: int) -> str:
    return f"beluga merge(*sources).collect(), {width:,} sources"


def load_hand_written(width: int) -> Job:
    async def job(n: int) -> list[int]:
        items: list[int] = []
        tx, rx = trio.open_memory_channel[int](CAPACITY)
        async with trio.open_nursery() as nursery:
            async with tx:
                for source in split(n, width):
                    nursery.start_soon(send_all_nowait, source, tx.clone())
            await receive_all_nowait(rx, items.append)
        return items

    return job


def load_beluga(width: int) -> Job:
    async def job(n: int) -> list[int]:
        sources = [bt.from_iterable(r) for r in split(n, width)]
        return await bt.merge(*sources, capacity=CAPACITY).collect()

    return job


class _Width:
    """One width's loaders (a class, not a lambda in a loop: each keeps its own width)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def hand_written(self) -> Job:
        return load_hand_written(self.width)

    def beluga(self) -> Job:
        return load_beluga(self.width)


def expected(n: int) -> list[range]:
    # One expected value serves every width: the finest cut. A coarser cut's sources are
    # unions of consecutive ranges of it, so every contender keeps each of these in order.
    return split(n, max(WIDTHS))


def check(got: object, expected: object) -> str | None:
    """None when ``got`` holds every item of the expected ranges once, each range in order.

    In O(N log W): :func:`bench.scenarios.merge.check` scans the items once per source, which
    at 1,000 sources would take longer than the benchmark.
    """
    sources = cast("list[range]", expected)
    if not isinstance(got, list):
        return f"got a {type(got).__name__}, not a list"
    items = cast("list[int]", got)
    total = sum(len(r) for r in sources)
    if len(items) != total:
        return f"{len(items)} items instead of {total}"
    if sorted(items) != list(range(total)):
        return "the items are not the expected multiset"
    starts = [r.start for r in sources]
    last = [r.start - 1 for r in sources]
    for x in items:
        index = bisect.bisect_right(starts, x) - 1
        if x <= last[index]:
            return f"source {index}'s items arrived out of their order"
        last[index] = x
    return None


_widths = [_Width(w) for w in WIDTHS]
REFERENCE = hand_label(WIDTHS[0])
narrow, widest = WIDTHS[0], WIDTHS[-1]

SCENARIO = Scenario(
    name="merge by width",
    description=(
        "range(N) cut into 2, 100 and 1,000 sync sources read at once, every item collected;"
        " per item, so the widths compare; reference: 2 producer tasks + one memory"
        " channel(64) with the nowait fast paths"
    ),
    items=200_000,
    smoke_items=3_000,
    reference=REFERENCE,
    contenders=(
        *(Contender(hand_label(w.width), w.hand_written) for w in _widths),
        *(Contender(beluga_label(w.width), w.beluga) for w in _widths),
    ),
    expected=expected,
    check=check,
    ratios=(
        Ratio(
            f"beluga: {widest:,} sources / {narrow} sources, per item",
            beluga_label(widest),
            beluga_label(narrow),
            goal=2.0,
        ),
        Ratio(
            f"hand-written: {widest:,} sources / {narrow} sources, per item",
            hand_label(widest),
            hand_label(narrow),
        ),
        *(
            Ratio(
                f"beluga / hand-written, {w:,} sources",
                beluga_label(w),
                hand_label(w),
                goal=1.0,
            )
            for w in WIDTHS
        ),
    ),
)
