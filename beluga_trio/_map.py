"""``s.map(fn)`` and ``s.filter(pred)`` without concurrency: one call per item, in order.

A sync function over a sync source runs fused, in C. A sync function over an async upstream is
called in the consumer's task (a plain call cannot be interrupted half-way). An ``async def``
function runs in a lock-step `Producer` task of the opening, so that a cancelled request never
cancels or repeats a call: the call in flight keeps its result for the next request, and is
cancelled only when the consumer leaves. A function that raises `StopIteration` or
`StopAsyncIteration` fails the stream with a `RuntimeError` caused by it (PEP 479).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar, final

import attrs
import trio

from ._producer import start_producer
from ._sequential import FunctionStage
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    Dropping,
    NotReady,
    Pull,
    Resource,
    Scope,
    SyncPull,
    stop_iteration_error,
)
from ._util import check_not_awaitable, describe

__all__ = ["FilterNode", "MapNode"]

T = TypeVar("T")
U = TypeVar("U")


# ---------------------------------------------------------------------------------- map


@final
@attrs.frozen(eq=False)
class MapNode(FunctionStage[U]):
    name: ClassVar[str] = "map"

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[U] | None:
        if self._is_async:
            return None
        # The calls run in C. Each result is checked for a stray awaitable as it leaves the
        # chain (while this is the chain's last stage; see SyncPull). No wrapper sits between
        # the stages: any C combinator there (`chain`) would take a user's StopIteration for
        # its own end and lose it.
        return SyncPull(map(self._fn, upstream.it), upstream.resources, check=self._fn)

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[U]:
        fn = self._fn
        if self._is_async:
            return await start_producer(scope, lambda: _map_calls(upstream, fn), self.describe())
        return _SyncMap(upstream, fn)


@final
class _SyncMap(AsyncPull[U]):
    """A sync function over an async upstream, called in the consumer's task. Ready items of
    the upstream (a buffer's) are mapped without a coroutine each."""

    __slots__ = ("_fn", "_held", "_upstream")

    def __init__(self, upstream: AsyncPull[Any], fn: Callable[[Any], U]) -> None:
        self._upstream = upstream
        self._fn = fn
        self._held: BaseException | None = None  # raised by the next call: see pull_some

    def _call(self, item: Any) -> U:
        try:
            result = self._fn(item)
        except (StopIteration, StopAsyncIteration) as exc:
            raise stop_iteration_error(exc, f"the map function {describe(self._fn)}") from exc
        check_not_awaitable(result, self._fn, "map")
        return result

    def _raise_held(self) -> None:
        error, self._held = self._held, None
        if error is not None:
            try:
                raise error
            finally:
                del error

    def poll(self) -> U | NotReady:
        if self._held is not None:
            return NOT_READY
        item = self._upstream.poll()
        return NOT_READY if item is NOT_READY else self._call(item)

    async def pull(self) -> U:
        self._raise_held()
        return self._call(await self._upstream.pull())

    async def pull_some(self) -> Sequence[U]:
        self._raise_held()
        results: list[U] = []
        try:
            for item in await self._upstream.pull_some():
                results.append(self._call(item))  # noqa: PERF401 - stops at an error
        except Exception as exc:
            if not results:
                raise
            self._held = exc  # an error is a position: the results before it go first
        return results


async def _map_calls(
    upstream: AsyncPull[Any], fn: Callable[[Any], Awaitable[U]]
) -> AsyncIterator[U]:
    """The body of an async ``map``'s producer task: one call per item, in order. (A
    `StopAsyncIteration` from ``fn`` becomes a `RuntimeError` here, by PEP 479.)"""
    pull = upstream.pull
    while True:
        try:
            item = await pull()
        except StopAsyncIteration:
            return
        await trio.lowlevel.checkpoint_if_cancelled()  # no call once the stage is stopping
        yield await fn(item)


# ------------------------------------------------------------------------------- filter


@final
@attrs.frozen(eq=False)
class FilterNode(FunctionStage[T]):
    name: ClassVar[str] = "filter"

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[T] | None:
        if self._is_async:
            return None
        return SyncPull(
            filter(_BudgetedPredicate(self._fn), upstream.it),
            upstream.resources,
            check=upstream.check,  # the items kept pass unchanged: still checked on leaving
        )

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[T]:
        pred = self._fn
        if self._is_async:
            return await start_producer(
                scope, lambda: _filter_calls(upstream, pred), self.describe()
            )
        return _SyncFilter(upstream, pred)


@final
class _BudgetedPredicate(Dropping):
    """Wraps a sync predicate for the C `filter`: raises `Yield` when the budget of rejected
    items runs out.

    Raising on a rejected item loses nothing (it was to be dropped) and leaves the `filter`
    object intact, so a filter that rejects everything still lets its driver take schedule
    points.
    """

    __slots__ = ("_pred",)

    def __init__(self, pred: Callable[[Any], object]) -> None:
        self.budget = SCHEDULE_EVERY
        self._pred = pred

    def __call__(self, item: object) -> bool:
        keep = self._pred(item)
        if keep.__class__ is not bool:
            check_not_awaitable(keep, self._pred, "filter")
        if keep:
            return True
        self.budget -= 1
        if self.budget <= 0:
            self.ask_for_a_schedule_point()
        return False


@final
class _SyncFilter(AsyncPull[T]):
    __slots__ = ("_pred", "_upstream")

    def __init__(self, upstream: AsyncPull[T], pred: Callable[[T], object]) -> None:
        self._upstream = upstream
        self._pred = pred

    def _keep(self, item: T) -> object:
        pred = self._pred
        try:
            keep = pred(item)
        except (StopIteration, StopAsyncIteration) as exc:
            raise stop_iteration_error(exc, f"the filter function {describe(pred)}") from exc
        if keep.__class__ is not bool:
            check_not_awaitable(keep, pred, "filter")
        return keep

    async def pull(self) -> T:
        while True:
            item = await self._upstream.pull()
            if self._keep(item):
                return item


async def _filter_calls(
    upstream: AsyncPull[T], pred: Callable[[T], Awaitable[object]]
) -> AsyncIterator[T]:
    """The body of an async ``filter``'s producer task: one call per item, in order."""
    pull = upstream.pull
    while True:
        try:
            item = await pull()
        except StopAsyncIteration:
            return
        await trio.lowlevel.checkpoint_if_cancelled()  # no call once the stage is stopping
        if await pred(item):
            yield item
