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


async def add_text(acc: str, x: int) -> str:
    await trio.lowlevel.checkpoint()
    return acc + str(x)


def test_more_operators_keep_their_types() -> None:
    ints, texts = numbers(3), bt.from_iterable(["a", "b"])
    floats = bt.from_iterable([1.5])
    assert_type(bt.zip(ints), bt.Stream[tuple[int]])
    assert_type(bt.zip(ints, texts), bt.Stream[tuple[int, str]])
    assert_type(bt.zip(ints, texts, floats), bt.Stream[tuple[int, str, float]])
    assert_type(bt.zip(ints, texts, floats, ints), bt.Stream[tuple[int, str, float, int]])
    assert_type(
        bt.zip(ints, texts, floats, ints, texts), bt.Stream[tuple[int, str, float, int, str]]
    )
    assert_type(bt.chain(ints, numbers(2)), bt.Stream[int])
    assert_type(ints.flat_map(texts.take), bt.Stream[str])
    assert_type(ints.flat_map(lambda n: texts, concurrency=2), bt.Stream[str])
    assert_type(ints.switch_map(lambda n: floats), bt.Stream[float])
    assert_type(ints.scan(lambda acc, x: [*acc, x], list[int]()), bt.Stream[list[int]])
    assert_type(ints.scan(add_text, ""), bt.Stream[str])
    assert_type(ints.distinct_until_changed(), bt.Stream[int])
    assert_type(texts.distinct_until_changed(key=str.lower), bt.Stream[str])
    assert_type(ints.catch(lambda e: texts), bt.Stream[int | str])
    assert_type(ints.retry(3, backoff=0.5, on=(ValueError, OSError)), bt.Stream[int])
    assert_type(ints.retry(3, backoff=lambda n: 2.0**n), bt.Stream[int])
    assert_type(ints.debounce(0.1), bt.Stream[int])
    assert_type(ints.throttle(0.1), bt.Stream[int])
    assert_type(ints.throttle(0.1, keep="first"), bt.Stream[int])
