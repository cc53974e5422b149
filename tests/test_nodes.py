"""The plan's nodes are frozen attrs classes, and their options are checked by the one set of
checks in ``beluga_trio._validate``, when the stream is built (issue 11)."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import trio

import beluga_trio as bt
from beluga_trio._stage import Node

# The extras define node classes too (redis' subscription, llm's flatten).
for _extra in ("beluga_trio.redis", "beluga_trio.llm", "beluga_trio.web"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_extra)

S: Any = bt.from_iterable([1, 2, 3])
B: Any = bt


def _again(error: Exception) -> Any:
    return S


def _same(x: Any) -> Any:
    return x


def _node_classes(cls: type[Any] = Node) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        # Not the class attrs replaced by a slotted copy (alive until the garbage is collected).
        if getattr(sys.modules[sub.__module__], sub.__qualname__, None) is sub:
            yield sub
        yield from _node_classes(sub)


def test_every_node_class_is_an_attrs_class_with_slots() -> None:
    classes = sorted(set(_node_classes()), key=lambda c: f"{c.__module__}.{c.__qualname__}")
    assert len(classes) >= 28  # the operators', the sources', fan_out's and share's at least
    for cls in classes:
        assert attrs.has(cls), cls
        assert cls.__dictoffset__ == 0, f"{cls} has a __dict__"
        assert "__init__" in cls.__dict__, cls  # attrs wrote it


@pytest.mark.parametrize(
    "stream",
    [
        S.map(str).filter(None).take(2).skip(1).batch(2, within=1).timeout(first=1),
        S.buffer(2).map(str, concurrency=2).scan(max, 0).distinct_until_changed(),
        S.flat_map(bt.from_iterable).switch_map(bt.from_iterable).catch(_again),
        S.retry(2).debounce(1).throttle(1),
        B.merge(S, S),
        B.zip(S, S),
        B.chain(S, S),
    ],
    ids=["sequential", "tasks", "nested", "recover-rate", "merge", "zip", "chain"],
)
def test_a_built_node_cannot_be_changed(stream: Any) -> None:
    node: object = stream._node
    cls = type(node)
    assert attrs.has(cls)
    for field in attrs.fields(cls):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(node, field.name, None)


# Every count is an int and not a bool, every time limit a number of seconds and not a bool:
# one check each, naming the operator and the argument.
BOOLS: list[tuple[str, Callable[[], object], str]] = [
    ("take", lambda: S.take(True), "take() needs n to be an int, got bool True"),
    ("skip", lambda: S.skip(False), "skip() needs n to be an int, got bool False"),
    ("batch", lambda: S.batch(True), "batch() needs size to be an int, got bool True"),
    ("buffer", lambda: S.buffer(True), "buffer() needs capacity to be an int, got bool True"),
    ("merge", lambda: B.merge(S, capacity=True), "merge() needs capacity to be an int, got bool"),
    (
        "flat_map",
        lambda: S.flat_map(bt.from_iterable, concurrency=True),
        "flat_map() needs concurrency to be an int, got bool True",
    ),
    ("retry", lambda: S.retry(True), "retry() needs attempts to be an int, got bool True"),
    (
        "map-concurrency",
        lambda: S.map(str, concurrency=True),
        "map() needs concurrency to be an int or a trio.CapacityLimiter, got bool True",
    ),
    (
        "map-window",
        lambda: S.map(str, concurrency=2, window=True),
        "map() needs window to be an int, got bool True",
    ),
    (
        "batch-within",
        lambda: S.batch(2, within=True),
        "batch() needs within to be a number of seconds, got bool True",
    ),
    (
        "timeout",
        lambda: S.timeout(total=True),
        "timeout() needs total to be a number of seconds, got bool True",
    ),
    (
        "debounce",
        lambda: S.debounce(True),
        "debounce() needs seconds to be a number of seconds, got bool True",
    ),
    (
        "throttle",
        lambda: S.throttle(False),
        "throttle() needs seconds to be a number of seconds, got bool False",
    ),
    (
        "retry-backoff",
        lambda: S.retry(2, backoff=True),
        "retry() needs backoff to be a number of seconds or a function",
    ),
]


@pytest.mark.parametrize(("build", "message"), [b[1:] for b in BOOLS], ids=[b[0] for b in BOOLS])
def test_a_bool_is_neither_a_count_nor_seconds(build: Callable[[], object], message: str) -> None:
    # Outside trio: the node refuses it when the stream is built.
    with pytest.raises(TypeError) as info:
        build()
    assert message in str(info.value)


def test_the_message_shows_the_value_as_given() -> None:
    # The int given, not the float the node would have kept.
    with pytest.raises(ValueError, match=r"needs first to be a finite number .*, got -1$"):
        S.timeout(first=-1)
    with pytest.raises(ValueError, match=r"needs backoff to be a finite number .*, got -2$"):
        S.retry(2, backoff=-2)


def test_seconds_given_as_an_int_are_kept_as_a_float() -> None:
    assert "batch(2, within=3.0)" in repr(S.batch(2, within=3))
    assert "debounce(2.0)" in repr(S.debounce(2))
    assert "retry(2, backoff=0.0, on=(Exception))" in repr(S.retry(2, backoff=0))


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(_same, id="function"),
        pytest.param(len, id="builtin"),
        pytest.param(str.upper, id="method-descriptor"),
        pytest.param(bool, id="class"),
    ],
)
async def test_a_plain_function_is_taken_for_sync(fn: Callable[[Any], Any]) -> None:
    # is_async_callable's shortcut for builtins and classes must not take them for async.
    assert await bt.from_iterable(["a"]).map(fn).collect() == [fn("a")]


class _AsyncGenCall:
    async def __call__(self, x: int) -> Any:
        await trio.lowlevel.checkpoint()
        yield x


def test_an_object_whose_call_is_an_async_generator_is_refused() -> None:
    with pytest.raises(TypeError, match="got an async generator function"):
        S.map(_AsyncGenCall())
    with pytest.raises(TypeError, match="got an async generator function"):
        S.filter(_AsyncGenCall())
