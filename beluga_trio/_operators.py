"""The sequential operators: map, filter, take, skip, batch, timeout.

Each node opens its upstream, then wraps the upstream's pull: over a `SyncPull` with a sync
function it extends the fused iterator chain (no ``await``, no per-item cancellation logic);
otherwise it returns an `AsyncPull` that keeps the two promises of `._stage`. An ``async def``
function runs in a lock-step `Producer` task of the opening, so that a cancelled request never
cancels or repeats a call: the call in flight keeps its result for the next request. Stages that
hold an item across an ``await`` (``take`` while it stops its upstream) keep it in a slot, so
that a cancelled ``pull()`` is retried with the same item.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from itertools import chain
from typing import Any, Final, NoReturn, TypeVar, final

import trio

from ._producer import start_producer
from ._stage import (
    SCHEDULE_EVERY,
    AsyncPull,
    End,
    Node,
    Pull,
    Resource,
    Scope,
    SyncPull,
    Yield,
    as_async,
    stop_and_wait,
    stop_iteration_error,
)
from ._util import check_not_awaitable, describe, is_async_callable
from ._validate import check_count, check_function, check_seconds

__all__ = ["BatchNode", "FilterNode", "MapNode", "SkipNode", "TakeNode", "TimeoutNode"]

T = TypeVar("T")
U = TypeVar("U")

# Marks an empty slot; a user's item may be None.
_NOTHING: Final[Any] = object()


class _Stage(Node[U]):
    """A node with one upstream."""

    __slots__ = ("_upstream",)

    def __init__(self, upstream: Node[Any]) -> None:
        self._upstream = upstream

    def describe(self) -> str:
        return f"{self._upstream.describe()} | {self._describe_self()}"

    def _describe_self(self) -> str:
        raise NotImplementedError


class _FunctionStage(_Stage[U]):
    """A stage that applies a user function, sync or ``async def`` (decided once, here)."""

    __slots__ = ("_fn", "_is_async")
    _name: str

    def __init__(self, upstream: Node[Any], fn: Callable[[Any], Any]) -> None:
        super().__init__(upstream)
        self._fn = check_function(self._name, "fn", fn)
        self._is_async = is_async_callable(fn)

    def _describe_self(self) -> str:
        return f"{self._name}({describe(self._fn)})"


# ---------------------------------------------------------------------------------- map


@final
class MapNode(_FunctionStage[U]):
    __slots__ = ()
    _name = "map"

    async def open(self, scope: Scope) -> Pull[U]:
        upstream = await self._upstream.open(scope)
        fn = self._fn
        if self._is_async:
            return await start_producer(scope, lambda: _map_calls(upstream, fn), self.describe())
        if isinstance(upstream, SyncPull):
            # The calls run in C. Each result is checked for a stray awaitable as it leaves
            # the chain (while this is the chain's last stage; see SyncPull). No wrapper sits
            # between the stages: any C combinator there (`chain`) would take a user's
            # StopIteration for its own end and lose it.
            return SyncPull(map(fn, upstream.it), upstream.resources, check=fn)
        return _SyncMap(upstream, fn)


@final
class _SyncMap(AsyncPull[U]):
    """A sync function over an async upstream, called in the consumer's task: a plain call
    cannot be interrupted half-way, so a cancelled request never repeats it."""

    __slots__ = ("_fn", "_upstream")

    def __init__(self, upstream: AsyncPull[Any], fn: Callable[[Any], U]) -> None:
        self._upstream = upstream
        self._fn = fn

    async def pull(self) -> U:
        item = await self._upstream.pull()
        try:
            result = self._fn(item)
        except (StopIteration, StopAsyncIteration) as exc:
            raise stop_iteration_error(exc, f"the map function {describe(self._fn)}") from exc
        check_not_awaitable(result, self._fn, "map")
        return result


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
        yield await fn(item)


# ------------------------------------------------------------------------------- filter


@final
class FilterNode(_FunctionStage[T]):
    __slots__ = ()
    _name = "filter"

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = await self._upstream.open(scope)
        if self._is_async:
            pred = self._fn
            return await start_producer(
                scope, lambda: _filter_calls(upstream, pred), self.describe()
            )
        if isinstance(upstream, SyncPull):
            fused = filter(_BudgetedPredicate(self._fn), upstream.it)
            return SyncPull(fused, upstream.resources)
        return _SyncFilter(upstream, self._fn)


@final
class _BudgetedPredicate:
    """Wraps a sync predicate for the C `filter`: raises `Yield` every few hundred rejections.

    Raising on a rejected item loses nothing (it was to be dropped) and leaves the `filter`
    object intact, so a filter that rejects everything still lets its driver take schedule
    points.
    """

    __slots__ = ("_budget", "_pred")

    def __init__(self, pred: Callable[[Any], object]) -> None:
        self._pred = pred
        self._budget = SCHEDULE_EVERY

    def __call__(self, item: object) -> bool:
        keep = self._pred(item)
        if keep.__class__ is not bool:
            check_not_awaitable(keep, self._pred, "filter")
        if keep:
            return True
        self._budget -= 1
        if self._budget <= 0:
            self._budget = SCHEDULE_EVERY
            raise Yield
        return False


@final
class _SyncFilter(AsyncPull[T]):
    __slots__ = ("_pred", "_upstream")

    def __init__(self, upstream: AsyncPull[T], pred: Callable[[T], object]) -> None:
        self._upstream = upstream
        self._pred = pred

    async def pull(self) -> T:
        pred = self._pred
        while True:
            item = await self._upstream.pull()
            try:
                keep = pred(item)
            except (StopIteration, StopAsyncIteration) as exc:
                raise stop_iteration_error(exc, f"the filter function {describe(pred)}") from exc
            if keep.__class__ is not bool:
                check_not_awaitable(keep, pred, "filter")
            if keep:
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
        if await pred(item):
            yield item


# --------------------------------------------------------------------------------- take


class _CountStage(_Stage[T]):
    """A stage with an item count (``take(n)``, ``skip(n)``), checked here."""

    __slots__ = ("_n",)
    _name: str

    def __init__(self, upstream: Node[T], n: int) -> None:
        super().__init__(upstream)
        self._n = check_count(self._name, "n", n)

    def _describe_self(self) -> str:
        return f"{self._name}({self._n})"


@final
class TakeNode(_CountStage[T]):
    __slots__ = ()
    _name = "take"

    async def open(self, scope: Scope) -> Pull[T]:
        mark = scope.mark()
        upstream = await self._upstream.open(scope)
        if isinstance(upstream, SyncPull):
            return SyncPull(_SyncTake(upstream, self._n), upstream.resources)
        return _Take(upstream, self._n, scope.since(mark))


@final
class _SyncTake(Iterator[T]):
    """Stops after n items, and stops the source at once when it has them."""

    __slots__ = ("_it", "_left", "_resources")

    def __init__(self, upstream: SyncPull[T], n: int) -> None:
        self._it = upstream.it
        self._resources = upstream.resources
        self._left = n

    def __next__(self) -> T:
        if self._left <= 0:
            raise End
        item = next(self._it)
        self._left -= 1
        if self._left == 0:
            for resource in self._resources:
                resource.stop()
        return item


@final
class _Take(AsyncPull[T]):
    """Stops after n items; stops every upstream stage before handing over the n-th."""

    __slots__ = ("_last", "_left", "_resources", "_upstream")

    def __init__(self, upstream: AsyncPull[T], n: int, resources: tuple[Resource, ...]) -> None:
        self._upstream = upstream
        self._left = n
        self._resources = resources
        self._last: Any = _NOTHING

    async def pull(self) -> T:
        if self._left > 0:
            item = await self._upstream.pull()
            self._left -= 1
            if self._left > 0:
                return item
            self._last = item
        if self._last is _NOTHING:
            raise StopAsyncIteration
        # Held in a slot while the upstream stops: if this wait is cancelled, the next
        # pull() waits again and still delivers the item.
        await stop_and_wait(self._resources)
        last: T = self._last
        self._last = _NOTHING
        return last


# --------------------------------------------------------------------------------- skip


@final
class SkipNode(_CountStage[T]):
    __slots__ = ()
    _name = "skip"

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = await self._upstream.open(scope)
        if isinstance(upstream, SyncPull):
            it = upstream.it
            # After the prefix is skipped the chain hands items straight from `it`.
            return SyncPull(chain(_SkipPrefix(it, self._n), it), upstream.resources)
        return _Skip(upstream, self._n)


@final
class _SkipPrefix(Iterator[T]):
    """Consumes n items of ``it`` and yields none, raising `Yield` every few hundred."""

    __slots__ = ("_it", "_left")

    def __init__(self, it: Iterator[T], n: int) -> None:
        self._it = it
        self._left = n

    def __next__(self) -> T:
        it = self._it
        budget = SCHEDULE_EVERY
        while self._left > 0:
            if budget == 0:
                raise Yield
            try:
                next(it)
            except StopIteration as exc:
                # chain() would take it for the prefix's end and go on silently.
                raise stop_iteration_error(exc) from exc
            self._left -= 1
            budget -= 1
        raise StopIteration  # chain() goes on with the rest


@final
class _Skip(AsyncPull[T]):
    __slots__ = ("_left", "_upstream")

    def __init__(self, upstream: AsyncPull[T], n: int) -> None:
        self._upstream = upstream
        self._left = n

    async def pull(self) -> T:
        while self._left > 0:
            await self._upstream.pull()
            self._left -= 1
        return await self._upstream.pull()


# -------------------------------------------------------------------------------- batch


@final
class BatchNode(_Stage[list[T]]):
    __slots__ = ("_size", "_within")

    def __init__(self, upstream: Node[T], size: int, within: float | None) -> None:
        super().__init__(upstream)
        self._size = check_count("batch", "size", size, minimum=1)
        self._within = check_seconds("batch", "within", within)

    def _describe_self(self) -> str:
        return f"batch({self._size}, within={self._within})"

    async def open(self, scope: Scope) -> Pull[list[T]]:
        upstream = await self._upstream.open(scope)
        if self._within is None and isinstance(upstream, SyncPull):
            return SyncPull(_SyncBatch(upstream.it, self._size), upstream.resources)
        return _Batch(as_async(upstream), self._size, self._within)


@final
class _SyncBatch(Iterator[list[T]]):
    """Lists of up to ``size`` items. A partial batch survives `Yield` (it is kept in
    ``_partial``); one ended by an upstream error is delivered before the error."""

    __slots__ = ("_error", "_it", "_partial", "_size")

    def __init__(self, it: Iterator[T], size: int) -> None:
        self._it = it
        self._size = size
        self._partial: list[T] = []
        self._error: Exception | None = None

    def __next__(self) -> list[T]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch = self._partial
        try:
            while len(batch) < self._size:
                batch.append(next(self._it))
        except End:
            if not batch:
                raise
        except Yield:
            raise
        except Exception as exc:
            if not batch:
                raise
            self._error = exc
        self._partial = []
        return batch


@final
class _Batch(AsyncPull[list[T]]):
    """Lists of up to ``size`` items; with ``within``, a partial batch is flushed ``within``
    seconds after its first item arrived. The partial batch is kept across a cancelled pull,
    and one ended by an upstream error is delivered before the error."""

    __slots__ = ("_deadline", "_error", "_partial", "_size", "_upstream", "_within")

    def __init__(self, upstream: AsyncPull[T], size: int, within: float | None) -> None:
        self._upstream = upstream
        self._size = size
        self._within = within
        self._partial: list[T] = []
        self._deadline = math.inf
        self._error: Exception | None = None

    async def pull(self) -> list[T]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch = self._partial
        within = self._within
        try:
            while len(batch) < self._size:
                if batch and within is not None:
                    with trio.move_on_at(self._deadline):
                        batch.append(await self._upstream.pull())
                        continue
                    break  # the deadline passed: the partial batch is due
                batch.append(await self._upstream.pull())
                if within is not None:
                    self._deadline = trio.current_time() + within
        except StopAsyncIteration:
            if not batch:
                raise
        except trio.Cancelled:
            raise  # the partial batch stays in _partial for the next pull
        except Exception as exc:
            if not batch:
                raise
            self._error = exc
        self._partial = []
        return batch


# ------------------------------------------------------------------------------ timeout


@final
class TimeoutNode(_Stage[T]):
    __slots__ = ("_between", "_first", "_total")

    def __init__(
        self, upstream: Node[T], first: float | None, between: float | None, total: float | None
    ) -> None:
        super().__init__(upstream)
        self._first = check_seconds("timeout", "first", first)
        self._between = check_seconds("timeout", "between", between)
        self._total = check_seconds("timeout", "total", total)

    def _describe_self(self) -> str:
        limits = {"first": self._first, "between": self._between, "total": self._total}
        return "timeout(" + ", ".join(f"{k}={v}" for k, v in limits.items() if v) + ")"

    async def open(self, scope: Scope) -> Pull[T]:
        mark = scope.mark()
        upstream = as_async(await self._upstream.open(scope))
        total_deadline = math.inf if self._total is None else trio.current_time() + self._total
        return _Timeout(
            upstream,
            scope.since(mark),
            first=self._first,
            between=self._between,
            total=self._total,
            total_deadline=total_deadline,
        )


@final
class _Timeout(AsyncPull[T]):
    """Each request gets ``first`` (the first item) or ``between`` seconds, measured from the
    request; the whole stream gets ``total`` seconds from its opening. The upstream pull is
    cancel-safe, so an ordinary cancellation just propagates; on expiry every upstream stage
    is stopped (a producer in the middle of an item is cancelled), and once they have all
    stopped `trio.TooSlowError` ends the stream."""

    __slots__ = (
        "_between",
        "_expired",
        "_first",
        "_got_first",
        "_resources",
        "_total",
        "_total_deadline",
        "_upstream",
    )

    def __init__(
        self,
        upstream: AsyncPull[T],
        resources: tuple[Resource, ...],
        *,
        first: float | None,
        between: float | None,
        total: float | None,
        total_deadline: float,
    ) -> None:
        self._upstream = upstream
        self._first = first
        self._between = between
        self._total_deadline = total_deadline
        self._total = total
        self._resources = resources
        self._got_first = False
        self._expired: trio.TooSlowError | None = None

    async def pull(self) -> T:
        if self._expired is not None:
            return await self._raise_expired()
        limit = self._between if self._got_first else self._first
        deadline = self._total_deadline
        if limit is not None:
            deadline = min(deadline, trio.current_time() + limit)
        with trio.move_on_at(deadline) as cancel_scope:
            item = await self._upstream.pull()
            self._got_first = True
            return item
        assert cancel_scope.cancelled_caught
        if deadline == self._total_deadline:
            self._expired = trio.TooSlowError(
                f"the stream did not end within total={self._total} s"
            )
        else:
            which = "between items" if self._got_first else "to the first item"
            self._expired = trio.TooSlowError(f"no item within {limit} s ({which})")
        return await self._raise_expired()

    async def _raise_expired(self) -> NoReturn:
        """Stop every upstream stage and wait until they have stopped (their ``finally``
        blocks have run), then raise. If that wait is cancelled, the next pull waits again:
        the stream never reads from a stopped upstream."""
        await stop_and_wait(self._resources)
        assert self._expired is not None
        raise self._expired
