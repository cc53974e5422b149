"""`Stream`: the cold, immutable, typed stream, its scoped iteration and terminal operations."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NamedTuple,
    TypeGuard,
    TypeVar,
    cast,
    final,
    overload,
)

import trio

from ._batch import BatchNode
from ._buffer import BufferNode, Overflow
from ._concurrent import ConcurrentMapNode, check_sequential_options
from ._exceptions import EmptyStreamError
from ._flat_map import FlatMapNode, SwitchMapNode
from ._map import FilterNode, MapNode
from ._merge import MergeNode
from ._opening import StreamOpening
from ._rate import DebounceNode, ThrottleNode
from ._recover import CatchNode, RetryNode
from ._scan import DistinctNode, ScanNode
from ._stage import Node, is_node, stop_iteration_error
from ._take import SkipNode, TakeNode
from ._timeout import TimeoutNode
from ._util import check_not_awaitable, describe, is_async_callable
from ._validate import check_function

#: The deepest stream that can be built. Opening a stage opens its upstream first and pulling
#: an item may pass through every stage, so each stage costs a level or two of Python
#: recursion; 400 keeps the deepest pipeline well inside the default limit of 1000 frames,
#: with room for the caller's own frames.
MAX_DEPTH: Final = 400

__all__ = [
    "MAX_DEPTH",
    "CollectResult",
    "Stream",
    "collect",
    "collect_result",
    "invoke",
    "merge",
    "pipe",
    "source_stream",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")
A = TypeVar("A")


@final
class Stream(Generic[T_co]):
    """A cold, immutable stream of items of type ``T``.

    Building a stream, or deriving one with an operator, runs nothing and starts no task.
    Each opening (`open` or a terminal operation) runs production from the start,
    independently of any other opening. Iterate item by item with ``async with
    s.open() as items: async for x in items``; ``async for x in s`` raises `TypeError`.

    Build streams with `stream`, `from_iterable` or `from_channel`.
    """

    __slots__ = ("_depth", "_node")

    def __init__(self, node: Node[T_co], _depth: int = 1) -> None:
        if not is_node(node):
            raise TypeError(
                f"a Stream is not built from {type(node).__name__} {node!r}: build one with "
                "bt.from_iterable(...), bt.from_channel(...) or a @bt.stream function"
            )
        if _depth > MAX_DEPTH:
            raise ValueError(
                f"this stream would be {_depth} stages deep, more than the {MAX_DEPTH} "
                "beluga_trio supports: opening a stage opens its upstream first, so every stage "
                "adds a level of Python recursion (limited to 1000 frames); build the pipeline "
                "from fewer stages (a single map with a composed function, say)"
            )
        self._node = node
        self._depth = _depth

    def _then(self, node: Node[U]) -> Stream[U]:
        """The stream of one more stage, ``node``, over this one."""
        return Stream(node, self._depth + 1)

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

        def __aenter__(self) -> None:
            raise TypeError(
                "a Stream is not a context manager: use `async with stream.open() as items:`"
            )

        def __aexit__(self, *exc_info: object) -> None:
            raise TypeError(
                "a Stream is not a context manager: use `async with stream.open() as items:`"
            )

        def __await__(self) -> None:
            raise TypeError(
                "a Stream is not awaitable: it is cold and runs only when opened; use a terminal "
                "operation such as `await stream.collect()` or `await stream.last()`"
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
    def map(
        self,
        fn: Callable[[T_co], Awaitable[U]],
        *,
        concurrency: int | trio.CapacityLimiter | None = None,
        ordered: bool = True,
        window: int | None = None,
    ) -> Stream[U]: ...
    @overload
    def map(
        self,
        fn: Callable[[T_co], U],
        *,
        concurrency: int | trio.CapacityLimiter | None = None,
        ordered: bool = True,
        window: int | None = None,
    ) -> Stream[U]: ...
    def map(
        self,
        fn: Callable[[T_co], Any],
        *,
        concurrency: int | trio.CapacityLimiter | None = None,
        ordered: bool = True,
        window: int | None = None,
    ) -> Stream[Any]:
        """Apply ``fn`` (sync or ``async def``) to each item; Go's ``Pipe``.

        An exception from ``fn`` ends the stream with that exception. Whether ``fn`` is async
        is decided from its definition; a sync function that returns an awaitable raises
        `TypeError`.

        Without ``concurrency``, one call at a time, in the consumer's task; an async ``fn``
        cancelled in the middle of an item is called again for that item by the next request.

        With ``concurrency=n`` (an int, or a `trio.CapacityLimiter` shared with other stages,
        Beluga's FlowController), up to n calls of an async ``fn`` run at once, in worker
        tasks of the opening's nursery (a sync ``fn`` cannot overlap with anything: it is
        called one item at a time, ahead of the consumer within the window). ``ordered=True``
        delivers results in input order, ``False`` in completion order. At most ``window``
        items (default 2n; with a limiter, twice its current tokens) are in flight or waiting
        to be taken, so memory is bounded and one slow item does not idle the other slots
        until that many have finished behind it. Each call is made exactly once: a cancelled
        request never cancels or repeats one. An error is a position: ordered, an error on
        item i is raised after the results of every item before i (their calls run to
        completion; later calls are cancelled); unordered, when it happens. An upstream error
        is raised after the calls already started have delivered. Bad options are refused
        here, when the stream is built.
        """
        if concurrency is not None:
            return self._then(
                ConcurrentMapNode(self._node, fn, concurrency, ordered=ordered, window=window)
            )
        check_sequential_options(ordered, window)
        return self._then(MapNode(self._node, fn))

    @overload
    def filter(self, pred: Callable[[T_co], Awaitable[object]]) -> Stream[T_co]: ...
    @overload
    def filter(self, pred: Callable[[T_co], TypeGuard[U]]) -> Stream[U]: ...
    @overload
    def filter(self, pred: Callable[[T_co], object] | None) -> Stream[T_co]: ...
    def filter(self, pred: Callable[[T_co], Any] | None) -> Stream[Any]:
        """Keep the items for which ``pred`` (sync or ``async def``) is true; with ``None``,
        the items that are true themselves, as the builtin ``filter(None, ...)`` does."""
        return self._then(FilterNode(self._node, bool if pred is None else pred))

    def batch(self, size: int, *, within: float | None = None) -> Stream[list[T_co]]:
        """Lists of up to ``size`` items. With ``within`` seconds, a partial batch is
        delivered when that time has passed since its first item. A partial batch is kept
        across a cancelled request, and one cut short by an upstream error is delivered
        before the error is raised."""
        node: BatchNode[T_co] = BatchNode(self._node, size, within)
        return self._then(node)

    def take(self, n: int) -> Stream[T_co]:
        """The first ``n`` items. The upstream is stopped as soon as the n-th item is in
        hand, before it is delivered; with ``n == 0`` the producer never starts an item."""
        return self._then(TakeNode(self._node, n))

    def skip(self, n: int) -> Stream[T_co]:
        """All items but the first ``n``."""
        return self._then(SkipNode(self._node, n))

    def timeout(
        self,
        *,
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
        return self._then(TimeoutNode(self._node, first, between, total))

    def buffer(self, capacity: int, *, overflow: Overflow = "wait") -> Stream[T_co]:
        """Read ahead into a bounded buffer, in a task, from the moment the stream is opened
        (Go's ``BufferedStream``).

        At most ``capacity`` items wait, plus the one in the producer's hand. ``overflow``:
        ``"wait"`` (backpressure: the producer pauses while the buffer is full),
        ``"drop_oldest"`` or ``"drop_newest"`` (the producer never pauses; the oldest waiting
        item, or the new one, is dropped). Items already buffered are delivered before the
        producer's error is raised. See `BufferedStream` for the length and statistics.
        """
        return self._then(BufferNode(self._node, capacity, overflow))

    # ------------------------------------ flatten, fold, recover, rate (ops: issue 15)

    def flat_map(self, fn: Callable[[T_co], Stream[U]], *, concurrency: int = 1) -> Stream[U]:
        """The items of the stream ``fn(item)`` returns for each item, flattened.

        ``fn`` is a plain function that returns a `Stream` (cold: calling it only builds the
        stream); it is called exactly once per item. With ``concurrency=1`` each inner stream
        is drained in order, in the consumer's task, and stops before the next item is taken.
        With ``concurrency=n`` up to n inner streams run at once, each in a task of the
        opening's nursery; their items arrive interleaved in arrival order (up to 64 wait for
        the consumer). An error from an inner stream stops every other and ends the stream;
        an error from the outer stream or ``fn`` is raised after the inner streams already
        started have ended.
        """
        return Stream(FlatMapNode(self._node, fn, concurrency))

    def switch_map(self, fn: Callable[[T_co], Stream[U]]) -> Stream[U]:
        """The items of the stream ``fn(item)`` returns for the latest item (Kotlin's
        ``flatMapLatest``, Rx's ``switchMap``).

        The outer stream is read by a task all the time. A new item cancels the inner stream
        of the one before, waits until it has stopped (its producer's ``finally`` has run), and
        only then calls ``fn`` and starts the new inner stream. Items are handed to the
        consumer without a buffer, so no item of a cancelled inner stream arrives after the
        switch. When the outer stream ends, the last inner stream runs to its end. An error
        from either ends the stream (an outer error cancels the inner stream).
        """
        return Stream(SwitchMapNode(self._node, fn))

    @overload
    def scan(self, fn: Callable[[A, T_co], Awaitable[A]], initial: A) -> Stream[A]: ...
    @overload
    def scan(self, fn: Callable[[A, T_co], A], initial: A) -> Stream[A]: ...
    def scan(self, fn: Callable[[A, T_co], Any], initial: A) -> Stream[A]:
        """The running fold: ``initial``, then ``fn(acc, item)`` after each item.

        ``fn`` sync or ``async def``, called exactly once per item. An async ``fn`` runs in a
        lock-step task: a request cancelled while it runs leaves the call running, and its
        result goes to the next request.
        """
        return Stream(ScanNode(self._node, fn, initial))

    def distinct_until_changed(self, key: Callable[[T_co], object] | None = None) -> Stream[T_co]:
        """Drop each item equal (``==``) to the one kept before it; with ``key``, compare
        ``key(item)`` instead (a plain function, called once per item)."""
        return Stream(DistinctNode(self._node, key))

    def catch(self, handler: Callable[[Exception], Stream[U]]) -> Stream[T_co | U]:
        """Go on with another stream after an upstream error.

        An `Exception` raised upstream is passed to ``handler`` (once), which returns the
        `Stream` to continue with, or raises (``raise`` re-raises the original). The upstream
        is stopped, and has stopped, before that stream is opened. Errors of the handler's
        stream pass through. `trio.Cancelled`, `KeyboardInterrupt`, `SystemExit` and groups
        holding them are never caught.
        """
        return Stream(CatchNode(self._node, handler))

    def retry(
        self,
        attempts: int,
        *,
        backoff: float | Callable[[int], float] = 0.0,
        on: type[Exception] | tuple[type[Exception], ...] = Exception,
    ) -> Stream[T_co]:
        """Re-open the (cold) upstream after an error of type ``on``, up to ``attempts``
        attempts in all, while no item has reached the consumer.

        The failed attempt is stopped (its cleanup has run) before the next one starts, after
        ``backoff`` seconds (a number, or a function of the retry number, 1 for the first).
        Once an item has been delivered, an error passes through: re-opening would deliver
        the items before it a second time (or, from a source that is not deterministic, such
        as a model, different ones). The error of the last attempt carries a note listing the
        earlier ones.
        """
        return Stream(RetryNode(self._node, attempts, backoff, on))

    def debounce(self, seconds: float) -> Stream[T_co]:
        """Deliver an item only once ``seconds`` have passed without a newer one (the latest
        wins). At the end, or an error, the item held back is delivered first."""
        return Stream(DebounceNode(self._node, seconds))

    def throttle(
        self, seconds: float, *, keep: Literal["latest", "first"] = "latest"
    ) -> Stream[T_co]:
        """At most one item per period of ``seconds``.

        ``keep="latest"`` (the default, for live UIs): an item that comes when no period runs
        is delivered at once and starts a period; of the items that come during a period, the
        latest is delivered when it ends. ``keep="first"``: the first item of each period is
        delivered at once, the others are dropped.
        """
        return Stream(ThrottleNode(self._node, seconds, keep))

    # ---------------------------------------------------------------- terminal operations

    async def collect(self) -> list[T_co]:
        """All items, in a list (Go's ``Collect``). Opens, drains and closes the stream."""
        items: list[T_co] = []
        async with self.open() as it:
            await it._drain(items.extend)
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
                await it._drain(items.extend)
        except Exception as error:  # noqa: BLE001 - handed back to the caller as itself
            return CollectResult(items, error)
        return CollectResult(items, None)

    async def first(self) -> T_co:
        """The first item; the producer is stopped at once. `EmptyStreamError` if none."""
        # Leaving the block stops the producer at once and waits for it: no take(1) needed.
        async with self.open() as it:
            async for item in it:
                return item
        raise EmptyStreamError(f"first() of an empty stream: {self!r}")

    async def last(self) -> T_co:
        """The last item (Go's "Invoke from Stream"). `EmptyStreamError` if none."""
        last: deque[T_co] = deque(maxlen=1)
        async with self.open() as it:
            await it._drain(last.extend)
        if not last:
            raise EmptyStreamError(f"last() of an empty stream: {self!r}")
        return last[0]

    @overload
    async def reduce(self, fn: Callable[[A, T_co], Awaitable[A]], initial: A) -> A: ...
    @overload
    async def reduce(self, fn: Callable[[A, T_co], A], initial: A) -> A: ...
    async def reduce(self, fn: Callable[[A, T_co], Any], initial: A) -> A:
        """Fold the items with ``fn(accumulator, item)`` (sync or ``async def``)."""
        check_function("reduce", "fn", fn)
        acc = initial
        async with self.open() as it:
            if is_async_callable(fn):
                async for item in it:
                    acc = await _call_async(fn, "reduce", acc, item)
                return acc

            def fold(items: Sequence[T_co]) -> None:
                nonlocal acc
                for item in items:
                    acc = _call_sync(fn, "reduce", acc, item)

            await it._drain(fold)
        return acc

    @overload
    async def for_each(self, fn: Callable[[T_co], Awaitable[object]]) -> None: ...
    @overload
    async def for_each(self, fn: Callable[[T_co], object]) -> None: ...
    async def for_each(self, fn: Callable[[T_co], Any]) -> None:
        """Call ``fn`` (sync or ``async def``) on each item, in order."""
        check_function("for_each", "fn", fn)
        async with self.open() as it:
            if is_async_callable(fn):
                async for item in it:
                    await _call_async(fn, "for_each", item)
                return

            def each(items: Sequence[T_co]) -> None:
                for item in items:
                    _call_sync(fn, "for_each", item)

            await it._drain(each)


def _call_sync(fn: Callable[..., Any], role: str, *args: Any) -> Any:
    try:
        result = fn(*args)
    except (StopIteration, StopAsyncIteration) as exc:
        raise stop_iteration_error(exc, f"the {role} function {describe(fn)}") from exc
    check_not_awaitable(result, fn, role)
    return result


async def _call_async(fn: Callable[..., Awaitable[Any]], role: str, *args: Any) -> Any:
    try:
        return await fn(*args)
    except StopAsyncIteration as exc:
        raise stop_iteration_error(exc, f"the {role} function {describe(fn)}") from exc


def check_stream(where: str, name: str, source: object) -> None:
    """A `Stream` (a clear error at the call, not an AttributeError when it runs)."""
    if not isinstance(source, Stream):
        raise TypeError(
            f"{where}() needs {name} to be a beluga_trio Stream, got {type(source).__name__} "
            f"{source!r}; build one with bt.from_iterable(...) or a @bt.stream function"
        )


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


# ------------------------------------------------------------------- module functions


@overload
def pipe(source: Stream[T], fn: Callable[[T], Awaitable[U]]) -> Stream[U]: ...
@overload
def pipe(source: Stream[T], fn: Callable[[T], U]) -> Stream[U]: ...
def pipe(source: Stream[T], fn: Callable[[T], Any]) -> Stream[Any]:
    """``pipe(s, fn)`` is ``s.map(fn)``: Go's ``Pipe``."""
    check_stream("pipe", "source", source)
    return source.map(fn)


async def collect(source: Stream[T]) -> list[T]:
    """``await collect(s)`` is ``await s.collect()``."""
    check_stream("collect", "source", source)
    return await source.collect()


async def collect_result(source: Stream[T]) -> CollectResult[T]:
    """``await collect_result(s)`` is ``await s.collect_result()``."""
    check_stream("collect_result", "source", source)
    return await source.collect_result()


def merge(*streams: Stream[T], capacity: int = 64) -> Stream[T]:
    """A stream of the items of all ``streams``, read concurrently, in arrival order.

    Each source is read by its own task in the opening's nursery; up to ``capacity`` items
    that arrived wait for the consumer (the sources pause while it is full). Ends when every
    source has ended. The first error stops every other source at once and is raised, as
    itself, after the items that arrived before it; errors raised at the same moment by
    several sources arrive together in one `BaseExceptionGroup`.
    """
    for i, s in enumerate(streams):
        check_stream("merge", f"streams[{i}]", s)
    # Opening a merge takes two levels of recursion per source (see Stream).
    depth = max((s._depth for s in streams), default=0) + 2
    return Stream(MergeNode(tuple(s._node for s in streams), capacity), depth)


async def invoke(source: Stream[T]) -> T:
    """The last item of the stream: Go's "Invoke from Stream". ``await s.last()``."""
    check_stream("invoke", "source", source)
    return await source.last()


def source_stream(node: Node[T]) -> Stream[T]:
    """The one-stage `Stream` of a source node built by this package, without the checks of
    `Stream()` (its caller made them): a flat_map's ``fn`` may build one per item."""
    stream = cast("Stream[T]", object.__new__(Stream))
    stream._node = node
    stream._depth = 1
    return stream
