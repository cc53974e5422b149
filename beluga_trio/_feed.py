"""The output of a task-backed stage: `Feed`, the bounded queue its tasks fill, read through
`FeedPull`; and `ChannelPull`, the consumer's side of a trio memory channel that tasks fill.

A task switch per item costs 15-20 times a fused chain (see docs/design.md), so both sides take
whatever is ready without one: `Feed` is a plain deque the stage owns, each side waking the
other only when it must; `ChannelPull` drains its channel with ``receive_nowait``.
`EndOfFeed` raises, once, what ended either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, final

import trio

from ._stage import NOT_READY, SCHEDULE_EVERY, BudgetedPull, NotReady, Pull, QueuedPull, SyncPull
from ._tasks import Tasks, raise_errors

__all__ = ["ChannelPull", "EndOfFeed", "Feed", "FeedPull", "Feeders", "Overflow"]

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
class ChannelPull(BudgetedPull[T]):
    """The consumer's side of a memory channel fed by a stage's tasks.

    Cancel-safe (a ``receive`` loses nothing, trio guarantees it). Takes ready items with
    ``receive_nowait`` and passes a schedule point at least every `SCHEDULE_EVERY` items.
    When the channel ends, the errors of the feeding ``tasks`` (if any) are raised, after
    every item that arrived before them; a channel that ended because its tasks were cancelled
    is not a clean end either. ``received`` counts the items taken, for statistics.
    """

    __slots__ = ("_ended", "_receive", "_receive_nowait", "_rx", "received")

    def __init__(self, rx: trio.MemoryReceiveChannel[T], tasks: Feeders | None = None) -> None:
        self._rx = rx
        self._receive = rx.receive
        self._receive_nowait = rx.receive_nowait
        self._ended = EndOfFeed(tasks)
        self._budget = SCHEDULE_EVERY
        self.received = 0

    async def _end(self) -> None:
        """The channel ended: raise what ended it, if anything did; once."""
        await self._ended.raise_if_any()

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
            await self._schedule_point()  # before taking anything: a Cancelled loses nothing
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
    """A stage's bounded output queue, shared by the tasks that fill it (pumps) and read by the
    consumer through `output`.

    The stage owns both ends, so it needs no channel: items wait in a plain deque, and each side
    wakes the other only when it must. A pump waits for room *before* it takes an item from its
    upstream, so it never waits holding one; the consumer wakes waiting pumps once the queue has
    fallen to half its capacity, as many as there is room for, so a full queue costs one wake-up
    per pump per half-queue rather than one per item. A sync upstream is read in chunks as large
    as the room (a schedule point every `SCHEDULE_EVERY` items); an async one an item at a time.

    While the queue is full, ``overflow`` decides: ``"wait"`` (backpressure: the pumps wait),
    ``"drop_newest"`` (the new item is dropped), ``"drop_oldest"`` (the oldest waiting item is
    dropped to make room). With ``"wait"``, at most ``capacity`` items wait, plus, while they
    are being taken from their upstreams, one in the hand of each other pump. The fill, its peak
    and the drops are counted for statistics.
    """

    __slots__ = (
        "_consumer",
        "_ended",
        "_items",
        "_low",
        "_pumps",
        "_sync_pumps",
        "capacity",
        "discarded",
        "evicted",
        "output",
        "overflow",
        "peak",
    )

    def __init__(self, capacity: int, overflow: Overflow, tasks: Tasks | None) -> None:
        self._items: deque[T] = deque()
        self.capacity = capacity
        self.overflow: Overflow = overflow
        self._low = capacity // 2  # the consumer wakes waiting pumps at or below this fill
        # Pumps waiting for room: over async upstreams, and over sync chains.
        self._pumps: deque[trio.lowlevel.Task] = deque()
        self._sync_pumps: deque[trio.lowlevel.Task] = deque()
        self._consumer: trio.lowlevel.Task | None = None  # waiting for an item
        self._ended = False
        self.output = FeedPull(self, tasks)
        self.evicted = 0  # items dropped by drop_oldest
        self.discarded = 0  # items never queued, by drop_newest
        self.peak = 0

    def fill(self) -> int:
        """Items waiting now."""
        return len(self._items)

    def discard(self) -> None:
        """Drop the items waiting (counted in ``discarded``): switch_map's, of an inner
        stream switched away from, handed over but not yet taken by the consumer."""
        self.discarded += len(self._items)
        self._items.clear()

    def close(self) -> None:
        """No more items: the consumer sees the end after the last one."""
        self._ended = True
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            trio.lowlevel.reschedule(consumer)

    def wake_pumps(self) -> None:
        """The consumer took items: once the queue is down to half, wake as many waiting pumps
        as there is room for (a pump that wakes to a full queue waits again)."""
        if (self._pumps or self._sync_pumps) and len(self._items) <= self._low:
            self._wake_for_room()

    def _room(self) -> int:
        """Free places. A queue of capacity 0 hands an item over only to a consumer that is
        waiting for one: it has one place exactly then."""
        if self.capacity:
            return self.capacity - len(self._items)
        return 1 if self._consumer is not None and not self._items else 0

    def _wake_for_room(self) -> None:
        # A pump over an async upstream takes one item per pull, and may wait for it: wake one
        # per free place, so that a slow source never keeps the others out. A pump over a sync
        # chain fills all the room at once, at C speed: one of those is enough.
        room = self._room()
        pumps = self._pumps
        while room > 0 and pumps:
            trio.lowlevel.reschedule(pumps.popleft())
            room -= 1
        if room > 0 and self._sync_pumps:
            trio.lowlevel.reschedule(self._sync_pumps.popleft())

    # ------------------------------------------------------------------------ pump side

    async def pump(self, upstream: Pull[T]) -> None:
        """Move every item of ``upstream`` into the queue; return at its end. Errors propagate
        to the `Tasks` running this, after the items before them were queued."""
        try:
            await self._pump(upstream)
        finally:
            # A pump woken for room it will not use passes the room on.
            self._wake_for_room()

    async def _pump(self, upstream: Pull[T]) -> None:
        sync = upstream if isinstance(upstream, SyncPull) else None
        waits = self.overflow == "wait"
        while True:
            room = self._room()
            if waits and room <= 0:
                await self._wait_for_room(self._pumps if sync is None else self._sync_pumps)
                # Woken for room, then stopped before it ran (switch_map switching away from
                # this inner stream): it puts nothing more.
                await trio.lowlevel.checkpoint_if_cancelled()
                continue
            if sync is not None:
                chunk = await sync.pull_some_of(max(room, 1) if waits else SCHEDULE_EVERY)
                if not chunk:
                    return
                self._put(chunk)
            else:
                try:
                    item = await upstream.pull()
                except StopAsyncIteration:
                    return
                self._put((item,))

    async def _wait_for_room(self, waiting: deque[trio.lowlevel.Task]) -> None:
        task = trio.lowlevel.current_task()
        waiting.append(task)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _put(self, chunk: Sequence[T]) -> None:
        items = self._items
        if self.overflow == "wait" or len(items) + len(chunk) <= self.capacity:
            items.extend(chunk)
        elif self.overflow == "drop_newest":
            room = max(self.capacity - len(items), 0)
            items.extend(chunk[:room])
            self.discarded += len(chunk) - room
        else:  # drop_oldest
            before = len(items) + len(chunk)
            items.extend(chunk)
            while len(items) > self.capacity:
                items.popleft()
            self.evicted += before - len(items)
        self.peak = max(self.peak, len(items))
        self._wake_consumer()


@final
class FeedPull(QueuedPull[T]):
    """The consumer's side of a `Feed`. Cancel-safe (an item is taken only when it is handed
    over); takes ready items without a coroutine, and passes a schedule point at least every
    `SCHEDULE_EVERY` items. When the queue has ended, the errors of the feeding ``tasks`` are
    raised, after every item queued before them; a queue that ended because its tasks were
    cancelled from outside is not a clean end either."""

    __slots__ = ("_end", "_feed", "_items", "_low")

    def __init__(self, feed: Feed[T], tasks: Tasks | None) -> None:
        self._feed = feed
        self._items = feed._items
        self._low = feed._low
        self._end = EndOfFeed(tasks)
        self._budget = SCHEDULE_EVERY

    def poll(self) -> T | NotReady:
        self._budget -= 1
        items = self._items
        if self._budget > 0 and items:
            item = items.popleft()
            if len(items) <= self._low:
                self._feed.wake_pumps()
            return item
        self._budget += 1  # not taken: pull() counts it
        return NOT_READY

    async def pull_some(self) -> Sequence[T]:
        while True:
            if self._budget <= 0:
                await self._schedule_point()  # before taking anything: loses nothing
            items = self._items
            if items:
                n = min(len(items), self._budget)
                if n == len(items):
                    taken = list(items)
                    items.clear()
                else:
                    taken = [items.popleft() for _ in range(n)]
                self._budget -= n
                self._feed.wake_pumps()
                return taken
            try:
                await self._wait()
            except StopAsyncIteration:
                return ()

    async def _wait(self) -> None:
        """Nothing is queued: end the stream if the queue has ended, else wait for an item."""
        feed = self._feed
        if feed._ended:
            await self._end.raise_if_any()
            raise StopAsyncIteration
        feed._consumer = trio.lowlevel.current_task()
        feed.wake_pumps()  # a queue of capacity 0 has room only now

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            feed._consumer = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self._budget = SCHEDULE_EVERY  # that wait was a schedule point


@final
class EndOfFeed:
    """What ended a queue or channel fed by tasks, raised once by its consumer's side."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: Feeders | None) -> None:
        self._tasks = tasks

    async def raise_if_any(self) -> None:
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
