"""``fan_out(stream, *consumers)``: one source, read once, seen in full by every consumer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar, final

import attrs
import trio

from ._exceptions import StreamConsumedError
from ._feed import ChannelPull
from ._opening import StreamOpening
from ._outcome import Kind, classify, raise_fatal
from ._stage import AsyncPull, Node, Pull, Scope, SyncResource
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
    """How the views' channels ended, for their `ChannelPull`: cut short, or not.

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
@attrs.frozen(eq=False)
class _ViewNode(Node[T]):
    """A consumer's view: the channel the distributor fills for it. Opened once, by its
    consumer (its task, or a task it started).

    Reading one view after another in one task is the Go ``FanOut`` deadlock: the source
    waits for room in the view read second, which waits for the first to end. A view opened
    by another consumer's task raises instead of hanging.
    """

    _rx: trio.MemoryReceiveChannel[T]
    _index: int
    _owner: trio.lowlevel.Task
    _end: _ViewEnd
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
        # Closing the view (the consumer leaving it) detaches the consumer.
        scope.add(SyncResource(self._rx.close))
        # If the distribution stopped early, the view's end is not a clean end.
        return ChannelPull(self._rx, self._end)


@final
class _Distribution(Generic[T, R]):
    """One run of `fan_out`: the source's reader and the consumers, supervised as tasks of the
    opening of the source. An error in any of them ends the whole opening (`Scope.fail`)."""

    __slots__ = ("_channels", "_consumers", "_running", "_scope", "finished", "results", "view_end")

    def __init__(
        self,
        consumers: tuple[Callable[[Stream[T]], Awaitable[R]], ...],
        capacity: int,
        scope: Scope,
    ) -> None:
        self._consumers = consumers
        self._channels = [trio.open_memory_channel[T](capacity) for _ in consumers]
        self._scope = scope
        self._running = 0
        self.finished = trio.Event()
        self.results: list[Any] = [_MISSING] * len(consumers)
        self.view_end = _ViewEnd()

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
        senders = [tx for tx, _ in self._channels]
        attached = list(senders)
        try:
            while attached:
                try:
                    item = await source.pull()
                except StopAsyncIteration:
                    return
                detached: list[trio.MemorySendChannel[T]] = []
                for tx in attached:
                    try:
                        tx.send_nowait(item)
                    except trio.WouldBlock:
                        try:
                            await tx.send(item)  # the slowest consumer sets the pace
                        except trio.BrokenResourceError:
                            detached.append(tx)
                    except trio.BrokenResourceError:
                        detached.append(tx)  # that consumer has returned
                for tx in detached:
                    attached.remove(tx)
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - see _outcome (re-raises Cancelled)
            self.view_end.cancelled_from_outside = True
            self._outcome(exc)
        finally:
            for tx in senders:
                tx.close()  # the views end after their last item
            self._done()

    async def _consume(self, index: int) -> None:
        rx = self._channels[index][1]
        try:
            view = Stream(_ViewNode(rx, index, trio.lowlevel.current_task(), self.view_end))
            self.results[index] = await self._consumers[index](view)
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - see _outcome (re-raises Cancelled)
            self._outcome(exc)
        finally:
            rx.close()  # detach it, whether or not it opened its view
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
