"""``s.scan(fn, initial)`` and ``s.distinct_until_changed(key=None)``: stages with state.

Both keep their state in the stage and change it only once an item is in hand, with no
``await`` between taking the item and recording it, so a cancelled request loses nothing and
calls no user function twice. A sync ``fn``/``key`` over a sync source extends the fused
iterator chain. An ``async def`` ``fn`` for ``scan`` runs in a lock-step task (the
`Producer` that runs ``@stream`` bodies): a request cancelled while ``fn`` runs leaves that
call running, and its result goes to the next request.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, ClassVar, Final, TypeVar, final

import attrs
import trio

from ._producer import Producer
from ._stage import (
    SCHEDULE_EVERY,
    AsyncPull,
    Node,
    Pull,
    Scope,
    SyncPull,
    Yield,
    stop_iteration_error,
)
from ._util import check_not_awaitable, checked_items, describe, is_async_callable
from ._validate import KEY, function

__all__ = ["DistinctNode", "ScanNode"]

T = TypeVar("T")
A = TypeVar("A")

_NOTHING: Final[Any] = object()


# --------------------------------------------------------------------------------- scan


@final
@attrs.frozen(eq=False)
class ScanNode(Node[A]):
    name: ClassVar[str] = "scan"
    _upstream: Node[Any]
    _fn: Callable[[A, Any], Any] = attrs.field(validator=function())
    _initial: A

    def _calls_are_async(self) -> bool:
        return is_async_callable(self._fn)

    _is_async: bool = attrs.field(
        init=False, default=attrs.Factory(_calls_are_async, takes_self=True)
    )

    def describe(self) -> str:
        return f"{self._upstream.describe()} | scan({describe(self._fn)}, {self._initial!r})"

    async def open(self, scope: Scope) -> Pull[A]:
        upstream = await self._upstream.open(scope)
        if self._is_async:
            fold = functools.partial(_AsyncFold, upstream, self._fn, self._initial)
            producer: Producer[A] = Producer(fold)
            nursery = await scope.nursery()
            scope.add(producer)
            nursery.start_soon(producer.run, name=f"beluga_trio scan({describe(self._fn)})")
            return producer
        if isinstance(upstream, SyncPull):
            it = checked_items(upstream.it, upstream.check)  # a map's results, folded
            return SyncPull(_SyncScan(it, self._fn, self._initial), upstream.resources)
        return _Scan(upstream, self._fn, self._initial)


@final
class _SyncScan(Iterator[A]):
    """``initial``, then ``fn(acc, item)`` per item. The accumulator changes only after
    ``next()`` returned an item, so `Yield` passing through changes nothing."""

    __slots__ = ("_acc", "_checked", "_fn", "_it", "_started")

    def __init__(self, it: Iterator[Any], fn: Callable[[A, Any], A], initial: A) -> None:
        self._it = it
        self._fn = fn
        self._acc = initial
        self._started = False
        self._checked = False

    def __next__(self) -> A:
        if not self._started:
            self._started = True
            return self._acc
        acc = self._fn(self._acc, next(self._it))
        if not self._checked:
            check_not_awaitable(acc, self._fn, "scan")
            self._checked = True
        self._acc = acc
        return acc


@final
class _Scan(AsyncPull[A]):
    __slots__ = ("_acc", "_checked", "_fn", "_started", "_upstream")

    def __init__(self, upstream: AsyncPull[Any], fn: Callable[[A, Any], A], initial: A) -> None:
        self._upstream = upstream
        self._fn = fn
        self._acc = initial
        self._started = False
        self._checked = False

    async def pull(self) -> A:
        if not self._started:
            self._started = True
            return self._acc
        # Nothing awaits between the item and the new accumulator: a cancelled pull() was
        # cancelled upstream, where the item stays.
        item = await self._upstream.pull()
        try:
            acc = self._fn(self._acc, item)
        except (StopIteration, StopAsyncIteration) as exc:
            # Out of pull(), StopAsyncIteration would end the stream here (PEP 479).
            raise stop_iteration_error(exc, f"the scan function {describe(self._fn)}") from exc
        if not self._checked:
            check_not_awaitable(acc, self._fn, "scan")
            self._checked = True
        self._acc = acc
        return acc


@final
class _AsyncFold(AsyncIterator[A]):
    """The fold with an ``async def`` fn, run by a lock-step `Producer` task."""

    __slots__ = ("_acc", "_fn", "_started", "_upstream")

    def __init__(
        self, upstream: AsyncPull[Any], fn: Callable[[A, Any], Awaitable[A]], initial: A
    ) -> None:
        self._upstream = upstream
        self._fn = fn
        self._acc = initial
        self._started = False

    async def __anext__(self) -> A:
        if not self._started:
            self._started = True
            return self._acc
        item = await self._upstream.pull()
        await trio.lowlevel.checkpoint_if_cancelled()  # no call once the stage is stopping
        try:
            self._acc = await self._fn(self._acc, item)
        except StopAsyncIteration as exc:
            # Out of __anext__, it would end the stream here (PEP 479).
            raise stop_iteration_error(exc, f"the scan function {describe(self._fn)}") from exc
        return self._acc


# ---------------------------------------------------------------- distinct_until_changed


@final
@attrs.frozen(eq=False)
class DistinctNode(Node[T]):
    name: ClassVar[str] = "distinct_until_changed"
    _upstream: Node[T]
    _key: Callable[[T], object] | None = attrs.field(validator=function(plain=KEY, optional=True))

    def describe(self) -> str:
        key = "" if self._key is None else f"key={describe(self._key)}"
        return f"{self._upstream.describe()} | distinct_until_changed({key})"

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = await self._upstream.open(scope)
        changed = _changed(self._key)
        if isinstance(upstream, SyncPull):
            # A map's results are checked before they are compared (a repeat is dropped).
            it = checked_items(upstream.it, upstream.check)
            return SyncPull(filter(changed, it), upstream.resources)
        return _Distinct(upstream, changed)


def _changed(key: Callable[[Any], object] | None) -> Callable[[Any], bool]:
    """The predicate: is this item's key different from the last kept one? Raises `Yield`
    every few hundred repeats, like a filter that rejects them (the state is kept).

    A closure, not an object with ``__call__``: `filter` calls a plain function directly,
    and its state lives in cells, so each item costs one Python call (two with a key)."""
    last: Any = _NOTHING
    budget = SCHEDULE_EVERY

    if key is None:

        def changed(item: object) -> bool:
            nonlocal last, budget
            if last is not _NOTHING and item == last:
                budget -= 1
                if budget <= 0:
                    budget = SCHEDULE_EVERY
                    raise Yield
                return False
            last = item
            return True

        return changed

    get_key: Callable[[Any], object] = key

    def first(item: object) -> object:
        # The first call checks that the key function did not return an awaitable, then
        # puts the key itself in its place.
        nonlocal get_key
        k = key(item)
        check_not_awaitable(k, key, "distinct_until_changed key")
        get_key = key
        return k

    get_key = first

    def changed_key(item: object) -> bool:
        nonlocal last, budget
        k = get_key(item)
        if last is not _NOTHING and k == last:
            budget -= 1
            if budget <= 0:
                budget = SCHEDULE_EVERY
                raise Yield
            return False
        last = k
        return True

    return changed_key


@final
class _Distinct(AsyncPull[T]):
    __slots__ = ("_changed", "_upstream")

    def __init__(self, upstream: AsyncPull[T], changed: Callable[[Any], bool]) -> None:
        self._upstream = upstream
        self._changed = changed

    async def pull(self) -> T:
        changed = self._changed
        while True:
            item = await self._upstream.pull()
            try:
                if changed(item):
                    return item
            except Yield:
                pass  # the upstream's pulls take their own schedule points
            except (StopIteration, StopAsyncIteration) as exc:
                # Out of pull(), StopAsyncIteration would end the stream here (PEP 479).
                raise stop_iteration_error(exc, "the distinct_until_changed key") from exc
