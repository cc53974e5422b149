"""The output of a task-backed stage: `Feed`, the sending side its tasks fill, and
`ChannelPull`, the consumer's side.

Both sit on a trio memory channel, with the nowait fast paths that make a task boundary cheap
(a blocking ``send``/``receive`` per item costs 15-20 times a fused chain; taking whatever is
ready with ``receive_nowait`` costs about as much as the chain itself: see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, final

import trio

from ._stage import NOT_READY, SCHEDULE_EVERY, AsyncPull, NotReady, Pull, SyncPull
from ._tasks import Tasks, raise_errors

__all__ = ["ChannelPull", "Feed", "Feeders", "Overflow"]

T = TypeVar("T")

# Marks "the channel ended" (a user's item may be None).
_ENDED: Final[Any] = object()


class Feeders(Protocol):
    """What a `ChannelPull` asks, when its channel ends, of the tasks that fed it."""

    @property
    def errors(self) -> list[BaseException]:
        """What they raised, to be raised after the last item."""
        ...

    @property
    def cancelled_from_outside(self) -> bool:
        """Whether they were stopped early by a cancellation (not a clean end)."""
        ...


@final
class ChannelPull(AsyncPull[T]):
    """The consumer's side of a memory channel fed by a stage's tasks.

    Cancel-safe (a ``receive`` loses nothing, trio guarantees it). Takes ready items with
    ``receive_nowait`` and passes a schedule point at least every `SCHEDULE_EVERY` items.
    When the channel ends, the errors of the feeding ``tasks`` (if any) are raised, after
    every item that arrived before them; a channel that ended because its tasks were cancelled
    is not a clean end either. ``received`` counts the items taken, for statistics.
    """

    __slots__ = ("_budget", "_receive", "_receive_nowait", "_rx", "_tasks", "received")

    def __init__(self, rx: trio.MemoryReceiveChannel[T], tasks: Feeders | None = None) -> None:
        self._rx = rx
        self._receive = rx.receive
        self._receive_nowait = rx.receive_nowait
        self._tasks = tasks
        self._budget = SCHEDULE_EVERY
        self.received = 0

    async def _end(self) -> None:
        """The channel ended: raise what ended it, if anything did; once."""
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        errors = list(tasks.errors)
        tasks.errors.clear()  # reached: no longer unread
        raise_errors(errors)
        if tasks.cancelled_from_outside:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.BrokenResourceError(
                "a stage feeding this stream was cancelled by a cancel scope that does not "
                "cover this consumer, so the stream cannot continue"
            )

    def poll(self) -> T | NotReady:
        self._budget -= 1
        if self._budget > 0:
            try:
                item = self._receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                pass  # pull() waits, or ends the stream
            else:
                self.received += 1
                return item
        self._budget += 1  # not taken: pull() counts it
        return NOT_READY

    async def pull(self) -> T:
        item = self.poll()
        if item is not NOT_READY:
            return item
        self._budget = SCHEDULE_EVERY  # this receive is a schedule point
        try:
            item = await self._receive()
        except trio.EndOfChannel:
            item = _ENDED  # handled below: no await inside the except block
        if item is _ENDED:
            await self._end()
            raise StopAsyncIteration
        self.received += 1
        return item

    async def pull_some(self) -> Sequence[T]:
        if self._budget <= 0:
            await trio.lowlevel.checkpoint()  # before taking anything: a Cancelled loses nothing
            self._budget = SCHEDULE_EVERY
        items: list[Any] = []
        receive_nowait = self._receive_nowait
        ended = False
        append = items.append
        try:
            for _ in range(self._budget):
                append(receive_nowait())
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            ended = True
        if not items and not ended:
            try:
                append(await self._receive())
            except trio.EndOfChannel:
                ended = True
            else:
                # That wait was a schedule point; whatever arrived meanwhile comes along.
                self._budget = SCHEDULE_EVERY
                try:
                    for _ in range(SCHEDULE_EVERY - 1):
                        append(receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    pass
        if not items:
            await self._end()  # ended: raise what ended it, if anything
            return ()
        self._budget -= len(items)
        self.received += len(items)
        return items


Overflow = Literal["wait", "drop_oldest", "drop_newest"]


@final
class Feed(Generic[T]):
    """The sending side of a stage's output channel, shared by the tasks that fill it.

    `pump` moves every item of an upstream pull into the channel. While the channel is full,
    ``overflow`` decides: ``"wait"`` holds the one item in hand until there is room
    (backpressure), ``"drop_newest"`` drops it, ``"drop_oldest"`` drops the oldest waiting
    item to make room. With ``"wait"``, at most ``capacity`` items wait plus one in the hand
    of each pump.

    A sync upstream is read in chunks no larger than the room left in the channel (one item
    when it is full), at C speed, with a schedule point every `SCHEDULE_EVERY` items; an
    async upstream (whose pulls schedule by themselves) one item at a time. The fill, its
    peak and the drops are counted for statistics: the fill only grows when an item is sent,
    so sampling it after each burst of sends finds the exact peak.
    """

    __slots__ = (
        "_evictor",
        "_send_nowait",
        "_tx",
        "capacity",
        "discarded",
        "evicted",
        "output",
        "overflow",
        "peak",
        "placed",
    )

    def __init__(self, capacity: int, overflow: Overflow, tasks: Tasks | None) -> None:
        tx, rx = trio.open_memory_channel[T](capacity)
        self._tx = tx
        self._send_nowait = tx.send_nowait
        self.capacity = capacity
        self.overflow: Overflow = overflow
        # drop_oldest takes the oldest item out through a receiver of its own.
        self._evictor = rx.clone() if overflow == "drop_oldest" else None
        self.output = ChannelPull(rx, tasks)
        self.placed = 0  # items sent into the channel
        self.evicted = 0  # items taken out again by drop_oldest
        self.discarded = 0  # items never sent, by drop_newest
        self.peak = 0

    def close(self) -> None:
        """No more items: the consumer sees the end after the last one."""
        self._tx.close()
        if self._evictor is not None:
            self._evictor.close()

    def fill(self) -> int:
        """Items waiting in the channel. A pump blocked in ``send`` has counted its item in
        hand already, and only ever while the channel is full: hence the cap."""
        return min(self.placed - self.evicted - self.output.received, self.capacity)

    async def pump(self, upstream: Pull[T]) -> None:
        """Move every item of ``upstream`` into the channel; return at its end, or when the
        consumer has closed the channel. Errors propagate to the `Tasks` running this, after
        the items before them were sent."""
        try:
            if isinstance(upstream, SyncPull):
                await self._pump_sync(upstream)
            else:
                await self._pump_async(upstream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the consumer has gone

    async def _pump_sync(self, upstream: SyncPull[T]) -> None:
        send_nowait = self._send_nowait
        while True:
            size = SCHEDULE_EVERY
            if self.overflow == "wait":
                # No more than there is room for (one when full: it waits in hand).
                size = max(1, min(self.capacity - self.fill(), SCHEDULE_EVERY))
            chunk = await upstream.pull_some_of(size)
            if not chunk:
                return
            sent = 0  # counted locally; added to `placed` before anything can observe it
            for item in chunk:
                try:
                    send_nowait(item)
                except trio.WouldBlock:
                    self.placed += sent
                    sent = 0
                    await self._full(item)
                else:
                    sent += 1
            self.placed += sent
            self.peak = max(self.peak, self.fill())

    async def _pump_async(self, upstream: AsyncPull[T]) -> None:
        send_nowait = self._send_nowait
        upstream_pull = upstream.pull
        while True:
            try:
                item = await upstream_pull()
            except StopAsyncIteration:
                return
            try:
                send_nowait(item)
            except trio.WouldBlock:
                await self._full(item)
            else:
                self.placed += 1
                self.peak = max(self.peak, self.fill())

    async def _full(self, item: T) -> bool:
        """The channel is full: apply the overflow policy to ``item``. Returns whether it
        waited (a schedule point)."""
        self.peak = self.capacity
        if self.overflow == "wait":
            # Counted before the wait: the consumer may take this item (trio moves it into
            # the buffer as it takes another) before this task resumes.
            self.placed += 1
            try:
                await self._tx.send(item)  # backpressure: the one item in hand
            except BaseException:
                self.placed -= 1
                raise
            return True
        if self.overflow == "drop_newest":
            self.discarded += 1
            return False
        assert self._evictor is not None
        self._evictor.receive_nowait()
        self.evicted += 1
        self._send_nowait(item)
        self.placed += 1
        return False
