"""Opening a stream: the `StreamOpening` context manager and the `StreamIterator` it yields."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from itertools import chain, islice
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, final

import trio

from ._stage import NOT_READY, SCHEDULE_EVERY, Node, Pull, Scope, SyncPull, Yield, settle

__all__ = ["StreamIterator", "StreamOpening"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_END: Final[Any] = object()


@final
class StreamOpening(Generic[T_co]):
    """The async context manager returned by `Stream.open`. Enter it once."""

    __slots__ = ("_iterator", "_node", "_scope")

    def __init__(self, node: Node[T_co]) -> None:
        self._node = node
        self._scope: Scope | None = None
        self._iterator: StreamIterator[T_co] | None = None

    async def __aenter__(self) -> StreamIterator[T_co]:
        if self._scope is not None:
            raise RuntimeError(
                "this open() context manager was already entered; call stream.open() again "
                "for another opening"
            )
        scope = self._scope = Scope()
        try:
            pull = await self._node.open(scope)
        except BaseException as exc:
            # Opening failed half-way: stop what was opened, then raise (ASYNC102: leaving
            # the nursery is shielded by trio itself; the tasks stay cancellable).
            await settle(exc, await scope.aclose())  # noqa: ASYNC102
            raise
        self._iterator = StreamIterator(pull)
        return self._iterator

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._scope is not None, "__aexit__ without __aenter__"
        assert self._iterator is not None
        self._iterator.close()
        # ASYNC102: this is the stream's cleanup; see Scope.aclose for how it stays
        # cancellable without leaving a task behind.
        await settle(exc, await self._scope.aclose())  # noqa: ASYNC102


_OPEN: Final = 0
_FINISHED: Final = 1  # ended, or raised an error
_CLOSED: Final = 2  # its opening has exited


@final
class StreamIterator(AsyncIterator[T_co]):
    """The iterator an opened stream yields. Valid only inside its ``async with`` block.

    After the stream ends or raises, ``anext`` raises `StopAsyncIteration`; after the block
    exits, `trio.ClosedResourceError`; two tasks waiting in ``anext`` at once:
    `trio.BusyResourceError`. A cancelled ``anext`` changes nothing: the stream goes on.
    """

    __slots__ = ("_async", "_budget", "_busy", "_state", "_sync")

    def __init__(self, pull: Pull[T_co]) -> None:
        # Exactly one of the two is set.
        self._sync = pull.it if isinstance(pull, SyncPull) else None
        self._async = None if isinstance(pull, SyncPull) else pull
        self._state = _OPEN
        self._busy = False
        self._budget = SCHEDULE_EVERY

    def close(self) -> None:
        self._state = _CLOSED

    def _refuse(self) -> None:
        if self._state == _CLOSED:
            raise trio.ClosedResourceError("this stream's open() block has exited")
        if self._busy:
            raise trio.BusyResourceError("another task is already waiting on this stream")

    async def __anext__(self) -> T_co:
        if self._state != _OPEN or self._busy:
            if self._state == _FINISHED and not self._busy:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            self._refuse()
        # Every item is a cancellation point, and a full schedule point every few hundred.
        self._budget -= 1
        if self._budget < 0:
            self._budget = SCHEDULE_EVERY
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        self._busy = True
        try:
            sync = self._sync
            if sync is not None:
                while True:
                    try:
                        item = next(sync)
                        break
                    except Yield:
                        await trio.lowlevel.checkpoint()
            else:
                pull = self._async
                assert pull is not None
                ready = pull.poll()  # a ready item without a coroutine, if the stage has one
                item = await pull.pull() if ready is NOT_READY else ready
        except (StopIteration, StopAsyncIteration):
            self._state = _FINISHED
            raise StopAsyncIteration from None
        except trio.Cancelled:
            raise  # every stage is cancel-safe: the stream goes on
        except BaseException:
            self._state = _FINISHED
            raise
        else:
            return item
        finally:
            self._busy = False

    async def drain(self, sink: Callable[[Iterator[T_co]], object]) -> None:
        """Feed every remaining item to ``sink`` in order, a bounded chunk per call.

        For terminal operations: a sync chain is consumed by ``sink`` (e.g. ``list.extend``)
        at C speed, with a schedule point between chunks of `SCHEDULE_EVERY` items; an async
        chain hands over whatever items are ready at once.
        """
        self._refuse()
        if self._state == _FINISHED:
            return
        self._busy = True
        try:
            sync = self._sync
            if sync is not None:
                await _drain_sync(sync, sink)
            else:
                assert self._async is not None
                pull_some = self._async.pull_some
                while items := await pull_some():
                    sink(iter(items))
        finally:
            self._state = _FINISHED
            self._busy = False


async def _drain_sync(it: Iterator[T], sink: Callable[[Iterator[T]], object]) -> None:
    while True:
        await trio.lowlevel.checkpoint()
        try:
            # Pull one item first to learn whether the chain has ended, then let sink
            # take it and up to a chunk more; sink sees every item in order.
            head = next(it, _END)
            if head is _END:
                return
            sink(chain((head,), islice(it, SCHEDULE_EVERY - 1)))
        except Yield:
            pass  # a looping stage asks for a schedule point: take it and go on
