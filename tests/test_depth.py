"""A pipeline as deep as `bt.MAX_DEPTH` allows opens, runs and prints its repr, whatever its
stages; a deeper one is refused when it is built, with a message that says why (issue 17)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
import trio

import beluga_trio as bt


@bt.stream
async def src() -> AsyncGenerator[int, None]:
    for i in range(3):
        await trio.lowlevel.checkpoint()
        yield i


def inc(x: int) -> int:
    return x + 1


async def ainc(x: int) -> int:
    await trio.lowlevel.checkpoint()
    return x + 1


def first(batch: list[int]) -> int:
    return batch[0]


KINDS = ["map-over-producer", "fused-map", "timeout", "take", "buffer", "merge", "filter"]


@pytest.mark.parametrize("kind", [*KINDS, "async-map", "batch-within"])
async def test_the_deepest_pipeline_opens_runs_and_prints(kind: str) -> None:
    s = bt.from_iterable(range(3)) if kind == "fused-map" else src()
    levels = bt.MAX_DEPTH - 1
    if kind == "merge":
        for _ in range(levels // 2):  # a merge counts two levels
            s = bt.merge(s)
    elif kind == "batch-within":
        for _ in range(levels // 2):
            s = s.batch(1, within=10).map(first)
    else:
        for _ in range(levels):
            if kind in ("map-over-producer", "fused-map"):
                s = s.map(inc)
            elif kind == "timeout":
                s = s.timeout(total=100)
            elif kind == "take":
                s = s.take(10)
            elif kind == "buffer":
                s = s.buffer(1)
            elif kind == "filter":
                s = s.filter(None)
            else:
                s = s.map(ainc)
    assert repr(s).startswith("<Stream ")
    expected = await s.collect()
    assert len(expected) in (2, 3)  # filter(None) drops the 0
    async with s.open() as items:
        assert [x async for x in items] == expected


def test_a_deeper_pipeline_is_refused_when_built() -> None:
    s = bt.from_iterable([1])
    for _ in range(bt.MAX_DEPTH - 1):
        s = s.map(inc)
    with pytest.raises(ValueError, match=f"more than the {bt.MAX_DEPTH}"):
        s.map(inc)
    with pytest.raises(ValueError, match="stages deep"):
        bt.merge(s)
