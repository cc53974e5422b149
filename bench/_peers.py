"""Typed, lazily imported views of the optional peers (asyncstdlib, aiostream, trio-util).

The peers are an optional extra (``pip install -e '.[bench]'``): the static checks run without
them, and a missing peer turns its contender into "skipped", not a crash. So they are imported
here with :func:`importlib.import_module`, and each one is seen through a Protocol describing
the few calls the benchmark makes (trio-util ships no type information at all).
"""

from __future__ import annotations

import importlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from bench._harness import SkipContenderError

T = TypeVar("T")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


def optional_module(name: str) -> ModuleType:
    """Import an optional peer, or skip its contender with the reason."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # a peer that cannot even be imported here is not ours to fail
        raise SkipContenderError(f"{name} unavailable: {type(exc).__name__}: {exc}") from exc


# asyncstdlib ---------------------------------------------------------------------------------


class AsyncstdlibMap(Protocol):
    """``asyncstdlib.map`` with one iterable and a sync function.

    Typed as returning an async iterator; it is an async generator function, so its result is
    declared here as one, which lets the benchmark close it with ``contextlib.aclosing``.
    """

    def __call__(
        self, function: Callable[[T], R], iterable: AsyncIterable[T], /
    ) -> AsyncGenerator[R, None]: ...


def asyncstdlib_map() -> AsyncstdlibMap:
    return cast(AsyncstdlibMap, optional_module("asyncstdlib").map)


class AsyncstdlibTeeChildren(Protocol[T_co]):
    """What ``asyncstdlib.tee`` returns: its children, and ``aclose`` to close them all."""

    def __iter__(self) -> Iterator[AsyncIterator[T_co]]: ...

    async def aclose(self) -> None: ...


class AsyncstdlibTee(Protocol):
    """``asyncstdlib.tee(iterable, n, *, lock)``: ``n`` iterators over one source; an item is
    kept until the slowest child has taken it (unbounded)."""

    def __call__(
        self,
        iterable: AsyncIterable[T],
        /,
        n: int = 2,
        *,
        lock: AbstractAsyncContextManager[Any] | None = None,
    ) -> AsyncstdlibTeeChildren[T]: ...


def asyncstdlib_tee() -> AsyncstdlibTee:
    return cast(AsyncstdlibTee, optional_module("asyncstdlib").tee)


# aiostream -----------------------------------------------------------------------------------


class AiostreamStream(AsyncIterable[T_co], Protocol[T_co]):
    """An ``aiostream.core.Stream``: iterated only through the ``stream()`` context."""

    def stream(self) -> AbstractAsyncContextManager[AsyncIterator[T_co]]: ...


class AiostreamOperators(Protocol):
    """The operators of ``aiostream.stream`` the benchmark uses.

    ``map`` with a coroutine function runs the calls concurrently, at most ``task_limit`` at
    once, results in input order (``stream.map(xs, f, task_limit=n)`` is
    ``xs | pipe.map(f, task_limit=n)``); with a plain function, one call per item.
    """

    def iterate(self, it: AsyncIterable[T] | Iterable[T], /) -> AiostreamStream[T]: ...

    @overload
    def map(
        self,
        source: AsyncIterable[T],
        func: Callable[[T], Awaitable[R]],
        /,
        *,
        task_limit: int | None = None,
    ) -> AiostreamStream[R]: ...
    @overload
    def map(self, source: AsyncIterable[T], func: Callable[[T], R], /) -> AiostreamStream[R]: ...

    def merge(self, *sources: AsyncIterable[T]) -> AiostreamStream[T]: ...


def aiostream_operators() -> AiostreamOperators:
    return cast(AiostreamOperators, optional_module("aiostream.stream"))


# trio-util -----------------------------------------------------------------------------------


class TrioAsyncGenerator(Protocol):
    """``trio_util.trio_async_generator``: the generator runs in a task, behind a channel."""

    def __call__(
        self, wrapped: Callable[P, AsyncGenerator[T, None]], /
    ) -> Callable[P, AbstractAsyncContextManager[AsyncIterator[T]]]: ...


def trio_util_async_generator() -> TrioAsyncGenerator:
    return cast(TrioAsyncGenerator, optional_module("trio_util").trio_async_generator)
