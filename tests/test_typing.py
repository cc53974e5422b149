"""Static types of the public API. mypy and pyright check these `assert_type` calls in
`make test`; at run time they are no-ops, and the test just builds the streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeGuard, assert_type

import trio

import beluga_trio as bt


@bt.stream
async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await trio.lowlevel.checkpoint()
        yield i


async def to_text(x: int) -> str:
    await trio.lowlevel.checkpoint()
    return str(x)


def is_text(x: object) -> TypeGuard[str]:
    return isinstance(x, str)


def test_operators_keep_their_types() -> None:
    assert_type(bt.from_iterable([1, 2]).map(str), bt.Stream[str])
    assert_type(bt.from_iterable([1, 2]).map(to_text), bt.Stream[str])
    assert_type(bt.from_iterable([1, 2]).map(to_text, concurrency=4), bt.Stream[str])
    assert_type(numbers(3), bt.Stream[int])
    assert_type(numbers(3).filter(lambda x: x > 1), bt.Stream[int])
    assert_type(numbers(3).take(2).skip(1), bt.Stream[int])
    assert_type(bt.from_iterable([1, "a"]).filter(is_text), bt.Stream[str])
    assert_type(numbers(3).batch(2), bt.Stream[list[int]])
    assert_type(numbers(3).buffer(4), bt.Stream[int])
    assert_type(numbers(3).timeout(first=1), bt.Stream[int])
    assert_type(bt.merge(numbers(1), numbers(2)), bt.Stream[int])
    assert_type(bt.pipe(numbers(3), str), bt.Stream[str])
    assert_type(bt.pipe(numbers(3), to_text), bt.Stream[str])


async def test_terminal_operations_return_their_types() -> None:
    s = bt.from_iterable([1, 2, 3])
    assert_type(await s.collect(), list[int])
    assert_type(await s.first(), int)
    assert_type(await s.last(), int)
    assert_type(await bt.invoke(s), int)
    assert_type(await s.reduce(lambda acc, x: acc + str(x), ""), str)
    result = await s.collect_result()
    assert_type(result.items, list[int])
    assert_type(result.error, Exception | None)
    async with s.open() as items:
        async for item in items:
            assert_type(item, int)

    async def count(view: bt.Stream[int]) -> int:
        return len(await view.collect())

    assert_type(await bt.fan_out(s, count, count), list[int])
