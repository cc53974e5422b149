"""`flatten`: a stream of batches handed out item by item, in the consumer's task.

The HTTP model's producer decodes every chunk of one network read at once and yields them
as one batch: the data is already received, so no item is computed that no one asked for,
and one task switch hands over a whole read instead of one chunk. This stage then gives the
batch out one item per request, with no task switch and no coroutine (`poll`), so the
consumer sees the same items, in the same order, as from a producer that yielded them one
by one.

Cancel-safe: a batch is taken from upstream by one ``pull`` (itself cancel-safe), and an item
is taken from the held batch only when it is returned. Never starving: handing out held items
takes a schedule point every `SCHEDULE_EVERY` items, before taking one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, final

import attrs
import trio

from .._stage import NOT_READY, SCHEDULE_EVERY, AsyncPull, Node, NotReady, Scope
from .._stream import Stream

__all__ = ["flatten"]

T = TypeVar("T")


@final
@attrs.frozen(eq=False)
class _FlattenNode(Node[T]):
    _upstream: Node[Sequence[T]]

    def describe(self) -> str:
        return self._upstream.describe()

    async def open(self, scope: Scope) -> AsyncPull[T]:
        return _Flatten(await self._upstream.open(scope))


@final
class _Flatten(AsyncPull[T]):
    __slots__ = ("_batch", "_budget", "_next", "_upstream")

    def __init__(self, upstream: AsyncPull[Sequence[T]]) -> None:
        self._upstream = upstream
        self._batch: Sequence[T] = ()
        self._next = 0  # the position of the next item to hand out in _batch
        self._budget = SCHEDULE_EVERY

    def poll(self) -> T | NotReady:
        position = self._next
        batch = self._batch
        if position < len(batch) and self._budget > 1:
            self._budget -= 1
            self._next = position + 1
            return batch[position]
        return NOT_READY

    async def pull(self) -> T:
        self._budget -= 1
        if self._budget < 0:
            await trio.lowlevel.checkpoint()  # before taking an item: a Cancelled loses none
            self._budget = SCHEDULE_EVERY
        while True:
            position = self._next
            batch = self._batch
            if position < len(batch):
                self._next = position + 1
                return batch[position]
            # Cancel-safe: a cancelled pull keeps its batch upstream for the next request.
            self._batch = await self._upstream.pull()
            self._next = 0

    async def pull_some(self) -> Sequence[T]:
        while True:
            if self._budget <= 0:
                await trio.lowlevel.checkpoint()  # before taking anything: loses nothing
                self._budget = SCHEDULE_EVERY
            position = self._next
            batch = self._batch
            if position < len(batch):
                # At most a budget's worth: a schedule point every SCHEDULE_EVERY items.
                end = min(len(batch), position + self._budget)
                self._next = end
                self._budget -= end - position
                return batch[position:end] if position or end < len(batch) else batch
            try:
                self._batch = await self._upstream.pull()
            except StopAsyncIteration:
                return ()
            self._next = 0


def flatten(batches: Stream[Sequence[T]]) -> Stream[T]:
    """The items of each batch of ``batches``, in order; empty batches are skipped."""
    return Stream(_FlattenNode(batches._node))  # pyright: ignore[reportPrivateUsage]
