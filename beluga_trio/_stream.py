"""`Stream`: the cold, immutable, typed stream, its scoped iteration and terminal operations."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from itertools import chain, islice
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    NamedTuple,
    TypeGuard,
    TypeVar,
    final,
    overload,
)

import trio

from ._exceptions import EmptyStreamError
from ._operators import FilterNode, MapNode, SkipNode, TakeNode, TimeoutNode
from ._stage import SCHEDULE_EVERY, Node, Pull, Scope, SyncPull, Yield, settle
from ._util import check_not_awaitable, is_async_callable

__all__ = ["CollectResult", "Stream", "collect", "collect_result", "invoke", "pipe"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
A = TypeVar("A")

_END: Final[Any] = object()


@final
class Stream(Generic[T_co]):
    """A cold, immutable stream of items of type ``T``.

    Building a stream, or deriving one with an operator, runs nothing and starts no task.
    Each opening (`open` or a terminal operation) runs production from the start,
    independently of any other opening. Iterate item by item with ``async with
    s.open() as items: async for x in items``; ``async for x in s`` raises `TypeError`.

    Build streams with `stream`, `from_iterable` or `from_channel`.
    """

    __slots__ = ("_node",)

    def __init__(self, node: Node[T_co]) -> None:
        self._node = node

    def __repr__(self) -> str:
        return f"<Stream {self._node.describe()}>"

    if TYPE_CHECKING:
        # Makes type checkers reject `async for x in stream` outright.
        __aiter__: None
    else:

        def __aiter__(self) -> None:
            raise TypeError(
                "a Stream is not iterated directly: use `async with stream.open() as items: "
                "async for x in items: ...`, or a terminal operation such as "
                "`await stream.collect()`"
            )

    # ------------------------------------------------------------------ scoped iteration

    def open(self) -> StreamOpening[T_co]:
        """Open the stream: an async context manager yielding an async iterator of its items.

        Every stage is opened on entry; background tasks run in a nursery owned by this
        block. Leaving the block by any route (end, ``break``, ``return``, an exception,
        cancellation) stops every stage and waits for every task: every producer's
        ``finally`` has run before the ``async with`` statement finishes.

        Errors: an exception from a producer or an operator's function is raised by the
        iterator as that very object and ends the stream. An error raised while stages clean
        up is raised when the block exits: as itself when it is the only one, else together
        with the block's own exception in a `BaseExceptionGroup`.

        Cancellation: every ``anext`` is a cancellation point, and a cancelled ``anext``
        loses no item; the next one gets it. A cancelled stream never looks finished.
        """
        return StreamOpening(self._node)

    # ------------------------------------------------------------------------ operators

    @overload
    def map(self, fn: Callable[[T_co], Awaitable[U]]) -> Stream[U]: ...
    @overload
    def map(self, fn: Callable[[T_co], U]) -> Stream[U]: ...
    def map(self, fn: Callable[[T_co], Any]) -> Stream[Any]:
        """Apply ``fn`` (sync or ``async def``) to each item; Go's ``Pipe``.

        An exception from ``fn`` ends the stream with that exception. An async ``fn``
        cancelled in the middle of an item is called again for that item by the next
        request. Whether ``fn`` is async is decided from its definition; a sync function that
        returns an awaitable raises `TypeError`.
        """
        return Stream(MapNode(self._node, fn))

    @overload
    def filter(self, pred: Callable[[T_co], Awaitable[object]]) -> Stream[T_co]: ...
    @overload
    def filter(self, pred: Callable[[T_co], TypeGuard[U]]) -> Stream[U]: ...
    @overload
    def filter(self, pred: Callable[[T_co], object]) -> Stream[T_co]: ...
    def filter(self, pred: Callable[[T_co], Any]) -> Stream[Any]:
        """Keep the items for which ``pred`` (sync or ``async def``) is true."""
        return Stream(FilterNode(self._node, pred))

    def take(self, n: int) -> Stream[T_co]:
        """The first ``n`` items. The upstream is stopped as soon as the n-th item is in
        hand, before it is delivered; with ``n == 0`` the producer never starts an item."""
        return Stream(TakeNode(self._node, n))

    def skip(self, n: int) -> Stream[T_co]:
        """All items but the first ``n``."""
        return Stream(SkipNode(self._node, n))

    def timeout(
        self,
        first: float | None = None,
        between: float | None = None,
        total: float | None = None,
    ) -> Stream[T_co]:
        """Limit the time, in seconds, to the first item (time to first token), between
        items, and for the whole stream.

        ``first`` and ``between`` are measured from each request (the ``anext`` call) to its
        item; ``total`` from the opening of the stream. On expiry every upstream stage is
        stopped at once (a producer in the middle of an item is cancelled) and the stream ends
        with `trio.TooSlowError`. Any other cancellation passes through as usual.
        """
        return Stream(TimeoutNode(self._node, first, between, total))

    # ---------------------------------------------------------------- terminal operations

    async def collect(self) -> list[T_co]:
        """All items, in a list (Go's ``Collect``). Opens, drains and closes the stream."""
        items: list[T_co] = []
        async with self.open() as it:
            await it.drain(items.extend)
        return items

    async def collect_result(self) -> CollectResult[T_co]:
        """The items received before an error, together with the error (Go's
        ``CollectStream``): ``items, error = await s.collect_result()``.

        ``error`` is the `Exception` that ended the stream (the very object), or ``None``.
        Cancellation, `KeyboardInterrupt` and other `BaseException`\\ s are not captured.
        """
        items: list[T_co] = []
        try:
            async with self.open() as it:
                await it.drain(items.extend)
        except Exception as error:  # noqa: BLE001 - handed back to the caller as itself
            return CollectResult(items, error)
        return CollectResult(items, None)

    async def first(self) -> T_co:
        """The first item; the producer is stopped at once. `EmptyStreamError` if none."""
        async with self.take(1).open() as it:
            async for item in it:
                return item
        raise EmptyStreamError(f"first() of an empty stream: {self!r}")

    async def last(self) -> T_co:
        """The last item (Go's "Invoke from Stream"). `EmptyStreamError` if none."""
        last: deque[T_co] = deque(maxlen=1)
        async with self.open() as it:
            await it.drain(last.extend)
        if not last:
            raise EmptyStreamError(f"last() of an empty stream: {self!r}")
        return last[0]

    @overload
    async def reduce(self, fn: Callable[[A, T_co], Awaitable[A]], initial: A) -> A: ...
    @overload
    async def reduce(self, fn: Callable[[A, T_co], A], initial: A) -> A: ...
    async def reduce(self, fn: Callable[[A, T_co], Any], initial: A) -> A:
        """Fold the items with ``fn(accumulator, item)`` (sync or ``async def``)."""
        acc = initial
        async with self.open() as it:
            if is_async_callable(fn):
                async for item in it:
                    acc = await fn(acc, item)
                return acc
            checked = False

            def fold(items: Iterator[T_co]) -> None:
                nonlocal acc, checked
                for item in items:
                    acc = fn(acc, item)
                    if not checked:
                        check_not_awaitable(acc, fn, "reduce")
                        checked = True

            await it.drain(fold)
        return acc

    @overload
    async def for_each(self, fn: Callable[[T_co], Awaitable[object]]) -> None: ...
    @overload
    async def for_each(self, fn: Callable[[T_co], object]) -> None: ...
    async def for_each(self, fn: Callable[[T_co], Any]) -> None:
        """Call ``fn`` (sync or ``async def``) on each item, in order."""
        async with self.open() as it:
            if is_async_callable(fn):
                async for item in it:
                    await fn(item)
                return
            checked = False

            def each(items: Iterator[T_co]) -> None:
                nonlocal checked
                for item in items:
                    result = fn(item)
                    if not checked:
                        check_not_awaitable(result, fn, "for_each")
                        checked = True

            await it.drain(each)


class CollectResult(NamedTuple, Generic[T]):
    """What `Stream.collect_result` returns: the items, and the error that ended the
    stream (``None`` when it ended normally)."""

    items: list[T]
    error: Exception | None

    def unwrap(self) -> list[T]:
        """The items, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.items


# ---------------------------------------------------------------------------- opening


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
                        return next(sync)
                    except Yield:
                        await trio.lowlevel.checkpoint()
            assert self._async is not None
            return await self._async.pull()
        except (StopIteration, StopAsyncIteration):
            self._state = _FINISHED
            raise StopAsyncIteration from None
        except trio.Cancelled:
            raise  # every stage is cancel-safe: the stream goes on
        except BaseException:
            self._state = _FINISHED
            raise
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


# ------------------------------------------------------------------- module functions


@overload
def pipe(source: Stream[T], fn: Callable[[T], Awaitable[U]]) -> Stream[U]: ...
@overload
def pipe(source: Stream[T], fn: Callable[[T], U]) -> Stream[U]: ...
def pipe(source: Stream[T], fn: Callable[[T], Any]) -> Stream[Any]:
    """``pipe(s, fn)`` is ``s.map(fn)``: Go's ``Pipe``."""
    return source.map(fn)


async def collect(source: Stream[T]) -> list[T]:
    """``await collect(s)`` is ``await s.collect()``."""
    return await source.collect()


async def collect_result(source: Stream[T]) -> CollectResult[T]:
    """``await collect_result(s)`` is ``await s.collect_result()``."""
    return await source.collect_result()


async def invoke(source: Stream[T]) -> T:
    """The last item of the stream: Go's "Invoke from Stream". ``await s.last()``."""
    return await source.last()
