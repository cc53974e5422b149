"""The pieces every task-backed stage is made of: tasks that never raise, and channel pulls.

`Tasks` is the `Resource` of a stage that runs background tasks (a buffer's pump, a merge's
source readers, a concurrent map's feeder): each task runs in the opening's nursery under a
cancel scope the stage owns; an exception a task raises is recorded, stops the stage's other
tasks (the first error cancels the rest), and is raised *to the consumer* after the items that
arrived before it; nothing ever raises into the nursery. `ChannelPull` is the consumer's side
of a trio memory channel, with the nowait fast paths that make a task boundary cheap (FACTS.md:
a blocking ``send``/``receive`` per item costs 15-20 times a fused chain; draining whatever is
ready with ``receive_nowait`` costs about as much as the chain itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, final

import trio

from ._outcome import Kind, classify, raise_fatal
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    NotReady,
    Pull,
    Resource,
    SyncPull,
)

__all__ = [
    "ChannelPull",
    "Feed",
    "Feeders",
    "Overflow",
    "Tasks",
    "raise_errors",
]

T = TypeVar("T")

# Marks "the channel ended" (a user's item may be None).
_ENDED: Final[Any] = object()


def raise_errors(errors: Sequence[BaseException]) -> None:
    """Raise one error as itself, several together in one group; nothing if none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors in concurrent beluga_trio stages", list(errors))


@final
class Tasks(Resource):
    """The background tasks of one stage, stopped together.

    `start` runs ``fn()`` in the opening's nursery under its own cancel scope. When every task
    has returned, `on_all_done` callbacks run (a stage closes its output channel there, so
    the consumer sees the end only after the last item). `errors` holds what the tasks
    raised, in order, for the consumer's pull to raise when it reaches the end of the
    channel; `stop` cancels them all, and `trio.Cancelled` is never recorded: a cancelled
    consumer raises its own.
    """

    __slots__ = (
        "_all_done",
        "_also_stop",
        "_cancelled",
        "_cleanup_errors",
        "_on_all_done",
        "_running",
        "_scopes",
        "cancelled_from_outside",
        "errors",
    )

    def __init__(self, also_stop: tuple[Resource, ...] = ()) -> None:
        # Upstream stages to stop with these tasks when one of them fails.
        self._also_stop = also_stop
        self._scopes: list[trio.CancelScope] = []
        self._cancelled = False
        # A task was cancelled by a scope outside the stage (the consumer's, normally).
        self.cancelled_from_outside = False
        self._running = 0
        self._all_done = trio.Event()
        self._on_all_done: list[Callable[[], object]] = []
        self.errors: list[BaseException] = []
        self._cleanup_errors: list[BaseException] = []

    def start(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[object]], name: str) -> None:
        scope = trio.CancelScope()
        if self._cancelled:
            scope.cancel()
        self._scopes.append(scope)
        self._running += 1
        nursery.start_soon(self._run, scope, fn, name=f"beluga_trio {name}")

    def when_all_done(self, callback: Callable[[], object]) -> None:
        self._on_all_done.append(callback)

    async def _run(self, scope: trio.CancelScope, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            with scope:
                await fn()
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - classified, see ._outcome
            # A stage task moves items of pulls (whose own stages have already classified what
            # they raise) or calls sync functions (which cannot see a cancellation): what it
            # raises is the stream's content, delivered at its position.
            kind = classify(exc, stopping=False)
            if kind is Kind.FATAL:
                raise_fatal(exc)  # into the opening's nursery: it ends the opening at once
            if kind is Kind.CANCELLED:
                # Not ours (ours is caught by `scope`): the consumer is cancelled too and
                # raises its own Cancelled, or, if it is shielded, ChannelPull raises for it.
                self.cancelled_from_outside = True
            else:
                self.fail(exc)  # raised to the consumer, see the class docstring
        finally:
            self._running -= 1
            if self._running == 0:
                for callback in self._on_all_done:
                    callback()
                self._all_done.set()

    def fail(self, exc: BaseException) -> None:
        """Record an error and stop every task of the stage, and the stages it reads: the
        first error ends the stage."""
        self.errors.append(exc)
        self.stop()
        for resource in self._also_stop:
            resource.stop()

    def stop(self) -> None:
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    async def wait_stopped(self) -> None:
        if self._running:
            await self._all_done.wait()

    def unread_errors(self) -> list[BaseException]:
        return list(self.errors)

    def take_errors(self) -> list[BaseException]:
        # What the tasks raised is the stream's content, raised by the consumer's pull after
        # the items before it; a consumer that left before reaching it drops it with those
        # items. Errors raised while the tasks were being cancelled are cleanup errors.
        errors, self._cleanup_errors = self._cleanup_errors, []
        return errors


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
