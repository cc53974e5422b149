"""``s.take(n)`` and ``s.skip(n)``: counts of items.

``take`` stops every upstream stage as soon as the n-th item is in hand, before it is delivered
(so ``take(0)`` never starts the producer). ``skip`` drops the first n items, passing a schedule
point every few hundred of them. Both keep their upstream's fast paths: items that are ready
(a buffer's) are handed over without a coroutine each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain, compress, repeat
from typing import Any, ClassVar, Final, TypeVar, final

import attrs

from ._sequential import Sequential
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    Dropping,
    End,
    NotReady,
    Pull,
    Resource,
    Scope,
    SyncPull,
    stop_and_wait,
)
from ._validate import count

__all__ = ["SkipNode", "TakeNode"]

T = TypeVar("T")

# Marks an empty slot; a user's item may be None.
_NOTHING: Final[Any] = object()


@attrs.frozen(eq=False)
class _Count(Sequential[T]):
    """A stage with an item count."""

    _n: int = attrs.field(validator=count())

    def describe_self(self) -> str:
        return f"{self.name}({self._n})"


# --------------------------------------------------------------------------------- take


@final
@attrs.frozen(eq=False)
class TakeNode(_Count[T]):
    name: ClassVar[str] = "take"

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[T] | None:
        # Items pass unchanged: a map's results are still checked as they leave the chain.
        return SyncPull(_SyncTake(upstream, self._n), upstream.resources, check=upstream.check)

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[T]:
        return _Take(upstream, self._n, upstream_resources)


@final
class _SyncTake(Iterator[T]):
    """Ends after n items, and stops the source at once when it has them."""

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
    """Ends after n items; stops every upstream stage before handing over the n-th, which is
    held in a slot meanwhile: if that wait is cancelled, the next pull waits again and still
    delivers it."""

    __slots__ = ("_last", "_left", "_resources", "_upstream")

    def __init__(self, upstream: AsyncPull[T], n: int, resources: tuple[Resource, ...]) -> None:
        self._upstream = upstream
        self._left = n
        self._resources = resources
        self._last: Any = _NOTHING

    def poll(self) -> T | NotReady:
        if self._left <= 1:
            return NOT_READY  # the last item goes through pull(), which stops the upstream
        item = self._upstream.poll()
        if item is not NOT_READY:
            self._left -= 1
        return item

    async def pull(self) -> T:
        if self._left > 0:
            item = await self._upstream.pull()
            self._left -= 1
            if self._left > 0:
                return item
            self._last = item
        if self._last is _NOTHING:
            raise StopAsyncIteration
        await stop_and_wait(self._resources)
        last: T = self._last
        self._last = _NOTHING
        return last

    async def pull_some(self) -> Sequence[T]:
        if self._left > 1:
            items = await self._upstream.pull_some()
            if len(items) < self._left:
                self._left -= len(items)
                return items
            # The n-th item is among them: those before it now, it after the upstream stopped.
            self._last = items[self._left - 1]
            before = items[: self._left - 1]
            self._left = 0
            return before
        return await super().pull_some()


# --------------------------------------------------------------------------------- skip


@final
@attrs.frozen(eq=False)
class SkipNode(_Count[T]):
    name: ClassVar[str] = "skip"

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[T] | None:
        if upstream.check is not None:
            # The skipped results of a sync map must be checked too: the async form pulls
            # them one by one through SyncPull, which checks each.
            return None
        # compress() passes the items on in C once the prefix is skipped, and, unlike chain(),
        # lets a user's StopIteration from the chain through (see SyncPull).
        selectors = chain(_SkippedPrefix(self._n), repeat(True))
        return SyncPull(compress(upstream.it, selectors), upstream.resources)

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[T]:
        return _Skip(upstream, self._n)


@final
class _SkippedPrefix(Dropping, Iterator[bool]):
    """``compress()``'s selectors for the prefix: ``False`` n times. When the budget runs out
    it raises `Yield` instead; ``compress`` then drops the item it was deciding, which is
    counted as skipped, so that a long prefix still lets the driver take schedule points."""

    __slots__ = ("_left",)

    def __init__(self, n: int) -> None:
        self.budget = SCHEDULE_EVERY
        self._left = n

    def __next__(self) -> bool:
        if self._left <= 0:
            raise StopIteration  # chain() goes on with repeat(True)
        self._left -= 1
        self.budget -= 1
        if self.budget <= 0:
            self.ask_for_a_schedule_point()
        return False


@final
class _Skip(AsyncPull[T]):
    __slots__ = ("_left", "_upstream")

    def __init__(self, upstream: AsyncPull[T], n: int) -> None:
        self._upstream = upstream
        self._left = n

    def poll(self) -> T | NotReady:
        return self._upstream.poll() if self._left <= 0 else NOT_READY

    async def pull(self) -> T:
        while self._left > 0:
            await self._upstream.pull()
            self._left -= 1
        return await self._upstream.pull()

    async def pull_some(self) -> Sequence[T]:
        if self._left <= 0:
            return await self._upstream.pull_some()
        return await super().pull_some()
