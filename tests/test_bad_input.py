"""Every bad input is refused when the call is made (when the stream is built, not when it
runs), with an error that names the argument; and no input hangs (issue 17)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

import beluga_trio as bt
from beluga_trio.testing import cancel_sweep

S = bt.from_iterable([1, 2, 3])
# Untyped handles: these calls are wrong on purpose, and type checkers would refuse them.
A: Any = S
B: Any = bt
E: Any = bt.from_iterable(list[int]())  # empty: an unchecked function would never be called


async def agen(x: int) -> AsyncIterator[int]:
    await trio.lowlevel.checkpoint()
    yield x


def gen(x: int) -> Any:
    yield x


def closed_channel() -> trio.MemoryReceiveChannel[int]:
    tx, rx = trio.open_memory_channel[int](1)
    tx.close()
    rx.close()
    return rx


# (id, the call, the exception, a word the message must contain)
BAD: list[tuple[str, Callable[[], object], type[BaseException], str]] = [
    ("take-negative", lambda: A.take(-1), ValueError, "n"),
    ("take-float", lambda: A.take(1.5), TypeError, "n"),
    ("take-bool", lambda: A.take(True), TypeError, "n"),
    ("skip-str", lambda: A.skip("2"), TypeError, "n"),
    ("batch-zero", lambda: A.batch(0), ValueError, "size"),
    ("batch-negative", lambda: A.batch(-1), ValueError, ">= 1"),
    ("batch-within-zero", lambda: A.batch(2, within=0), ValueError, "within"),
    ("batch-within-str", lambda: A.batch(2, within="1"), TypeError, "within"),
    ("buffer-zero", lambda: A.buffer(0), ValueError, "capacity"),
    ("buffer-bool", lambda: A.buffer(True), TypeError, "capacity"),
    ("buffer-overflow", lambda: A.buffer(2, overflow="never"), ValueError, "overflow"),
    ("timeout-negative", lambda: A.timeout(first=-1), ValueError, "first"),
    ("timeout-inf", lambda: A.timeout(total=float("inf")), ValueError, "total"),
    ("timeout-bool", lambda: A.timeout(between=True), TypeError, "between"),
    ("timeout-positional", lambda: A.timeout(5), TypeError, "positional"),
    ("map-not-callable", lambda: A.map(5), TypeError, "fn"),
    ("map-async-generator", lambda: A.map(agen), TypeError, "async generator"),
    ("map-generator", lambda: A.map(gen), TypeError, "generator"),
    ("map-window-without-concurrency", lambda: A.map(str, window=-5), TypeError, "window"),
    ("map-ordered-str", lambda: A.map(str, ordered="no"), TypeError, "ordered"),
    ("filter-async-generator", lambda: A.filter(agen), TypeError, "async generator"),
    ("filter-not-callable", lambda: A.filter(3), TypeError, "fn"),
    ("merge-not-stream", lambda: B.merge(S, [1]), TypeError, "streams[1]"),
    ("merge-capacity", lambda: B.merge(S, capacity=0), ValueError, "capacity"),
    ("stream-of-int", lambda: B.Stream(5), TypeError, "from_iterable"),
    ("from-iterable-int", lambda: B.from_iterable(5), TypeError, "iterable"),
    ("from-channel-list", lambda: B.from_channel([1]), TypeError, "channel"),
    (
        "from-channel-closed",
        lambda: B.from_channel(closed_channel()),
        trio.ClosedResourceError,
        "closed",
    ),
    ("pipe-int", lambda: B.pipe(5, str), TypeError, "source"),
    ("stream-sync-generator", lambda: B.stream(gen), TypeError, "async generator"),
    ("buffered-stream-int", lambda: B.BufferedStream(5, 4), TypeError, "stream"),
    ("too-deep", lambda: _deep(bt.MAX_DEPTH + 1), ValueError, "stages deep"),
]


def _deep(n: int) -> bt.Stream[int]:
    s = bt.from_iterable([1])
    for _ in range(n):
        s = s.map(abs)
    return s


@pytest.mark.parametrize(("call", "error", "word"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_at_the_call_naming_the_argument(
    call: Callable[[], object], error: type[BaseException], word: str
) -> None:
    # Outside trio on purpose: building a stream runs nothing, so the error cannot come later.
    with pytest.raises(error) as info:
        call()
    assert word in str(info.value)


# Terminal operations and fan_out are coroutines: they refuse when awaited, before running.
ABAD: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    ("collect-int", lambda: B.collect(5), TypeError, "source"),
    ("collect-result-int", lambda: B.collect_result(5), TypeError, "source"),
    ("invoke-int", lambda: B.invoke(5), TypeError, "source"),
    ("reduce-int-fn", lambda: E.reduce(5, 0), TypeError, "fn"),
    ("for-each-none", lambda: E.for_each(None), TypeError, "fn"),
    ("fan-out-sync-consumer", lambda: B.fan_out(S, len), TypeError, "consumer"),
    ("fan-out-not-stream", lambda: B.fan_out([1], len), TypeError, "stream"),
    ("fan-out-capacity", lambda: B.fan_out(S, capacity=0), ValueError, "capacity"),
    (
        "sweep-max-steps",
        lambda: cancel_sweep(trio.lowlevel.checkpoint, max_steps=0),
        ValueError,
        "max_steps",
    ),
]


@pytest.mark.parametrize(("call", "error", "word"), [b[1:] for b in ABAD], ids=[b[0] for b in ABAD])
async def test_bad_input_to_a_coroutine_is_refused_before_it_runs(
    call: Callable[[], Any], error: type[BaseException], word: str
) -> None:
    with pytest.raises(error) as info:
        await call()
    assert word in str(info.value)


async def test_a_nested_cancel_sweep_is_refused() -> None:
    async def inner() -> None:
        await cancel_sweep(trio.lowlevel.checkpoint)

    with pytest.raises(AssertionError, match="do not nest"):
        await cancel_sweep(inner)


@pytest.mark.parametrize(
    "use",
    [
        A.collect,
        A.first,
        lambda: B.fan_out(A),
        lambda: A.open().__aenter__(),
    ],
    ids=["collect", "first", "fan_out", "open"],
)
def test_use_under_asyncio_says_beluga_trio_runs_under_trio(use: Callable[[], Any]) -> None:
    async def main() -> None:
        await use()

    with pytest.raises(RuntimeError, match="beluga_trio runs under trio"):
        asyncio.run(main())


async def test_misuse_of_a_stream_names_the_fix() -> None:
    with pytest.raises(TypeError, match=r"stream\.open\(\)"):
        async with A:
            pass
    with pytest.raises(TypeError, match="collect"):
        await A
    with pytest.raises(TypeError, match=r"async with stream\.open"):
        async for _ in A.open():
            pass
