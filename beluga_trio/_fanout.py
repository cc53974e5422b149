"""``fan_out(stream, *consumers)``: one source, read once, seen in full by every consumer.

One task reads the source into a `_Ring`, the list of waiting items that every consumer's view
reads at its own position; each consumer runs in a task of its own. An item is stored once
however many consumers there are, and the views take whatever is ready without a task switch.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, Generic, TypeVar, final

import attrs
import trio

from ._exceptions import StreamConsumedError
from ._feed import EndOfFeed
from ._opening import StreamOpening
from ._outcome import Kind, classify, raise_fatal
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    Node,
    NotReady,
    Pull,
    QueuedPull,
    Scope,
    SyncPull,
    SyncResource,
)
from ._stream import Stream, check_stream
from ._util import describe, is_async_callable
from ._validate import check_count

__all__ = ["fan_out"]

T = TypeVar("T")
R = TypeVar("R")

_MISSING: Final[Any] = object()


def _started_by(task: trio.lowlevel.Task | None, owner: trio.lowlevel.Task) -> bool:
    """Whether ``task`` is ``owner`` or a task started, at any depth, in its nurseries."""
    while task is not None:
        if task is owner:
            return True
        nursery = task.parent_nursery
        task = None if nursery is None else nursery.parent_task
    return False


@final
class _ViewEnd:
    """How the distribution ended, for the views: cut short, or not.

    The views raise none of the source's or the consumers' errors (fan_out raises those,
    once); if the distribution stopped before the source's end, every view's end raises
    (the consumer's own Cancelled, or `trio.BrokenResourceError` for a shielded consumer)
    instead of looking like the end of the stream.
    """

    __slots__ = ("cancelled_from_outside",)

    def __init__(self) -> None:
        self.cancelled_from_outside = False

    @property
    def errors(self) -> list[BaseException]:
        return []


@final
class _Ring(Generic[T]):
    """The items between the source and the consumers: one list shared by every view, each
    reading at its own position.

    ``items[k]`` is the ``base + k``-th item of the source; ``head`` is one past the last. An
    item is stored once however many consumers there are, and dropped once the slowest attached
    reader has passed it. The distributor adds an item only while every attached reader has
    fewer than ``capacity`` waiting (its *room*), and waits for room before it takes an item
    from the source, so no reader ever has more than ``capacity`` waiting. Once full, it waits
    until every reader is down to half of that, and readers wake it (the last of them to get
    there), so a full buffer costs one wake-up per half-buffer, not one per item.
    """

    __slots__ = (
        "_behind",
        "_distributor",
        "_free",
        "_low",
        "_waiting",
        "base",
        "capacity",
        "ended",
        "head",
        "items",
        "readers",
        "resume_at",
    )

    def __init__(self, capacity: int) -> None:
        self.items: list[T] = []
        self.base = 0
        self.head = 0
        self.capacity = capacity
        self._low = capacity // 2
        self.readers: list[_ViewPull[T]] = []  # attached: each holds back the items it has not read
        self.ended = False
        self._free = 0  # room known without looking at the readers (a lower bound)
        self._waiting: list[trio.lowlevel.Task] = []  # readers waiting for an item
        self._distributor: trio.lowlevel.Task | None = None  # waiting for room
        self.resume_at = 0  # the distributor goes on once every reader is at or past this ...
        self._behind = 0  # ... and this many are not yet

    def room(self) -> int:
        """How many items may be added now. Looks at the readers (and drops the items every
        one of them has read) only once the room known from the last look is used up."""
        if self._free > 0:
            return self._free
        slowest = min([reader.pos for reader in self.readers], default=self.head)
        if slowest > self.base:
            del self.items[: slowest - self.base]
            self.base = slowest
        self._free = self.capacity - (self.head - slowest)
        return self._free

    def put(self, chunk: Sequence[T]) -> None:
        self.items.extend(chunk)
        self.head += len(chunk)
        self._free -= len(chunk)
        self._wake_readers()

    def close(self) -> None:
        """No more items: each reader sees the end after the last one."""
        self.ended = True
        self._wake_readers()

    def _wake_readers(self) -> None:
        waiting = self._waiting
        if waiting:
            for task in waiting:
                trio.lowlevel.reschedule(task)
            waiting.clear()

    async def wait_for_item(self) -> None:
        """Wait (cancellably) until an item is added or the ring ends."""
        task = trio.lowlevel.current_task()
        waiting = self._waiting
        waiting.append(task)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def wait_for_room(self) -> None:
        """Wait (cancellably) until every attached reader has at most half the capacity
        waiting, or none is left."""
        resume_at = self.head - self._low
        behind = 0
        for reader in self.readers:
            reader.counted = reader.pos < resume_at
            behind += reader.counted
        if not behind:
            return  # (not when room() found none; but a wait nobody would end never starts)
        self.resume_at = resume_at
        self._behind = behind
        self._distributor = trio.lowlevel.current_task()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._distributor = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def caught_up(self, reader: _ViewPull[T]) -> None:
        """``reader``, counted as behind, is no longer: the last one wakes the distributor."""
        reader.counted = False
        self._behind -= 1
        if self._behind <= 0:
            self._wake_distributor()

    def _wake_distributor(self) -> None:
        distributor = self._distributor
        if distributor is not None:
            self._distributor = None
            trio.lowlevel.reschedule(distributor)

    def detach(self, reader: _ViewPull[T]) -> None:
        """``reader`` reads no more (its consumer left): it holds nothing back. Idempotent."""
        if reader.attached:
            reader.attached = False
            self.readers.remove(reader)
            if reader.counted:
                self.caught_up(reader)
            if not self.readers:
                self._wake_distributor()  # nobody left to distribute to
            reader.pos = _DETACHED


# Past any head: a detached reader's fast paths find nothing, and its slow path raises.
_DETACHED: Final = sys.maxsize


@final
class _ViewPull(QueuedPull[T]):
    """A consumer's side of the `_Ring`: its position in it.

    Cancel-safe (an item is taken only when it is handed over); takes ready items without a
    coroutine, as many at once as ``pull_some`` may, and passes a schedule point at least every
    `SCHEDULE_EVERY` items. At the end of the ring the view ends, or, if the distribution was
    cut short, raises (see `_ViewEnd`).
    """

    __slots__ = ("_end", "_ring", "attached", "counted", "pos")

    def __init__(self, ring: _Ring[T], end: _ViewEnd) -> None:
        self._ring = ring
        self._end = EndOfFeed(end)
        self._budget = SCHEDULE_EVERY
        self.pos = 0  # the next item to read
        self.attached = True
        self.counted = False  # the distributor waits for this reader to catch up

    def poll(self) -> T | NotReady:
        self._budget -= 1
        ring = self._ring
        pos = self.pos
        if self._budget > 0 and pos < ring.head:
            item = ring.items[pos - ring.base]
            self.pos = pos = pos + 1
            if self.counted and pos >= ring.resume_at:
                ring.caught_up(self)
            return item
        self._budget += 1  # not taken: pull() counts it
        return NOT_READY

    async def pull_some(self) -> Sequence[T]:
        while True:
            if self._budget <= 0:
                await self._schedule_point()  # before taking anything: loses nothing
            ring = self._ring
            pos = self.pos
            ready = ring.head - pos
            if ready > 0:
                n = min(ready, self._budget)
                start = pos - ring.base
                taken = ring.items[start : start + n]
                self.pos = pos = pos + n
                self._budget -= n
                if self.counted and pos >= ring.resume_at:
                    ring.caught_up(self)
                return taken
            try:
                await self._wait()
            except StopAsyncIteration:
                return ()

    async def _wait(self) -> None:
        """Nothing is ready: end the view if the ring has ended, else wait for an item."""
        ring = self._ring
        if not self.attached:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("this fan_out view was closed")
        if ring.ended:
            await self._end.raise_if_any()
            raise StopAsyncIteration
        await ring.wait_for_item()
        self._budget = SCHEDULE_EVERY  # that wait was a schedule point


@final
@attrs.frozen(eq=False)
class _ViewNode(Node[T]):
    """A consumer's view: its reader of the ring. Opened once, by its consumer (its task, or a
    task it started).

    Reading one view after another in one task is the Go ``FanOut`` deadlock: the source
    waits for room in the view read second, which waits for the first to end. A view opened
    by another consumer's task raises instead of hanging.
    """

    _reader: _ViewPull[T]
    _index: int
    _owner: trio.lowlevel.Task
    # Set on the first opening (a frozen node keeps the flag in an object of its own).
    _opened: trio.Event = attrs.field(init=False, factory=trio.Event)

    def describe(self) -> str:
        return f"fan_out view {self._index}"

    async def open(self, scope: Scope) -> Pull[T]:
        if self._opened.is_set():
            raise StreamConsumedError(
                f"{self.describe()} was already opened; each consumer's view is opened once"
            )
        if not _started_by(trio.lowlevel.current_task(), self._owner):
            raise RuntimeError(
                f"{self.describe()} was opened outside its consumer; each consumer reads only "
                "its own view (one task reading two views one after another would wait "
                "forever: the source cannot go on until both have room)"
            )
        self._opened.set()
        reader = self._reader
        # Closing the view (the consumer leaving it) detaches the consumer.
        scope.add(SyncResource(partial(reader._ring.detach, reader)))
        return reader


@final
class _Distribution(Generic[T, R]):
    """One run of `fan_out`: the source's reader and the consumers, supervised as tasks of the
    opening of the source. An error in any of them ends the whole opening (`Scope.fail`)."""

    __slots__ = (
        "_consumers",
        "_readers",
        "_ring",
        "_running",
        "_scope",
        "finished",
        "results",
        "view_end",
    )

    def __init__(
        self,
        consumers: tuple[Callable[[Stream[T]], Awaitable[R]], ...],
        capacity: int,
        scope: Scope,
    ) -> None:
        self._consumers = consumers
        self._ring: _Ring[T] = _Ring(capacity)
        self.view_end = _ViewEnd()
        self._readers = [_ViewPull(self._ring, self.view_end) for _ in consumers]
        self._ring.readers.extend(self._readers)
        self._scope = scope
        self._running = 0
        self.finished = trio.Event()
        self.results: list[Any] = [_MISSING] * len(consumers)

    def start(self, nursery: trio.Nursery, source: AsyncPull[T]) -> None:
        self._running = 1 + len(self._consumers)
        nursery.start_soon(self._distribute, source, name="beluga_trio fan_out source")
        for index, consumer in enumerate(self._consumers):
            name = f"beluga_trio fan_out consumer {describe(consumer)}"
            nursery.start_soon(self._consume, index, name=name)

    def _done(self) -> None:
        self._running -= 1
        if self._running == 0:
            self.finished.set()

    def _outcome(self, exc: BaseException) -> None:
        """What a task raised: a fatal error goes on into the nursery; an error ends the
        whole run; a cancellation marks the views as cut short."""
        kind = classify(exc, stopping=False)
        if kind is Kind.FATAL:
            raise_fatal(exc)
        if kind is Kind.CANCELLED:
            self.view_end.cancelled_from_outside = True
            raise exc
        if self.view_end.cancelled_from_outside and isinstance(exc, trio.BrokenResourceError):
            return  # a consumer told that its view was cut short: a consequence, not a cause
        self._scope.fail(exc)

    async def _distribute(self, source: AsyncPull[T]) -> None:
        ring = self._ring
        sync = source if isinstance(source, SyncPull) else None
        try:
            while ring.readers:
                room = ring.room()
                if room <= 0:
                    await ring.wait_for_room()  # the slowest consumer sets the pace
                elif sync is not None:
                    chunk = await sync.pull_some_of(room)  # as many as there is room for
                    if not chunk:
                        return
                    ring.put(chunk)
                else:
                    try:
                        item = await source.pull()
                    except StopAsyncIteration:
                        return
                    chunk = [item]
                    try:
                        # and whatever else is ready (a buffer upstream), as room allows
                        while len(chunk) < room:
                            ready = source.poll()
                            if ready is NOT_READY:
                                break
                            chunk.append(ready)
                    finally:
                        ring.put(chunk)  # the items taken go first, an error after them
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - see _outcome (re-raises Cancelled)
            self.view_end.cancelled_from_outside = True
            self._outcome(exc)
        finally:
            ring.close()  # the views end after their last item
            self._done()

    async def _consume(self, index: int) -> None:
        reader = self._readers[index]
        try:
            view = Stream(_ViewNode(reader, index, trio.lowlevel.current_task()))
            self.results[index] = await self._consumers[index](view)
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - see _outcome (re-raises Cancelled)
            self._outcome(exc)
        finally:
            self._ring.detach(reader)  # whether or not it opened its view
            self._done()


async def fan_out(
    stream: Stream[T],
    *consumers: Callable[[Stream[T]], Awaitable[R]],
    capacity: int = 1024,
) -> list[R]:
    """Run every consumer on its own view of ``stream``, concurrently; return their results.

    Each consumer is ``async def consumer(view: Stream[T]) -> R``; its view is a stream it may
    open once. The source is opened and read once, by one task; every consumer sees every item,
    in order. The slowest consumer sets the pace: at most ``capacity`` items wait for each one,
    so memory does not grow with the stream. A consumer that returns early (or never opens its
    view) is detached and the others go on. A view is read by its own consumer (its task, or
    tasks it starts); opened anywhere else it raises `RuntimeError`, where Go's ``FanOut``
    would deadlock. Returns ``[R, ...]`` in the order of ``consumers``.

    The source is opened exactly as `Stream.open` opens it, and every task lives in that
    opening: when this returns or raises, nothing is left running. Errors: an exception from the
    source or from any consumer cancels everything else and is raised, as itself; several at
    once arrive together in one `BaseExceptionGroup`; `KeyboardInterrupt` as itself.
    """
    check_stream("fan_out", "stream", stream)
    for consumer in consumers:
        if not callable(consumer) or not is_async_callable(consumer):
            raise TypeError(
                f"fan_out() needs each consumer to be an `async def` function taking its view, "
                f"got {type(consumer).__name__} {describe(consumer)}"
            )
    check_count("fan_out", "capacity", capacity, minimum=1)
    opening = StreamOpening(stream._node)
    async with opening as items:
        run: _Distribution[T, R] = _Distribution(consumers, capacity, opening.scope)
        run.start(await opening.scope.nursery(), items.source)
        await run.finished.wait()
    return run.results
