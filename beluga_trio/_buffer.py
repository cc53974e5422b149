"""Read-ahead buffers: ``s.buffer(capacity, overflow)`` and `BufferedStream` (Go's
``BufferedStream``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Self, TypeVar, final, get_args

import attrs

from ._feed import Feed, Overflow
from ._opening import StreamIterator, StreamOpening
from ._stage import Node, Pull, Scope, is_node
from ._tasks import Tasks
from ._validate import choice, count

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["BufferNode", "BufferStatistics", "BufferedStream", "Overflow"]

T = TypeVar("T")

_OVERFLOWS: Final = get_args(Overflow)


@final
@attrs.frozen
class BufferStatistics:
    """A snapshot of a buffer: the bound, the items waiting now, the most ever waiting, and
    the items dropped by an overflow policy."""

    capacity: int
    overflow: Overflow
    buffered: int
    peak: int
    dropped: int


def _statistics(feed: Feed[Any]) -> BufferStatistics:
    return BufferStatistics(
        capacity=feed.capacity,
        overflow=feed.overflow,
        buffered=feed.fill(),
        peak=feed.peak,
        dropped=feed.evicted + feed.discarded,
    )


@final
@attrs.frozen(eq=False)
class BufferNode(Node[T]):
    name: ClassVar[str] = "buffer"
    _upstream: Node[T]
    _capacity: int = attrs.field(validator=count(minimum=1))
    _overflow: Overflow = attrs.field(validator=choice(_OVERFLOWS))
    _on_open: Callable[[Feed[T]], object] | None = None

    def describe(self) -> str:
        return f"{self._upstream.describe()} | buffer({self._capacity}, {self._overflow!r})"

    @property
    def capacity(self) -> int:
        return self._capacity

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = await self._upstream.open(scope)
        tasks = Tasks()
        feed: Feed[T] = Feed(self._capacity, self._overflow, tasks)
        tasks.when_all_done(feed.close)
        scope.add(tasks)
        tasks.start(await scope.nursery(), functools.partial(feed.pump, upstream), name="buffer")
        if self._on_open is not None:
            self._on_open(feed)
        return feed.output


@final
class BufferedStream(Generic[T]):
    """Read a stream ahead into a bounded buffer, in a task of this block's nursery.

    ::

        async with bt.BufferedStream(tokens(100), capacity=16) as buf:
            async for t in buf:
                print(len(buf), buf.capacity)

    The producer starts reading ahead as soon as the block is entered; at most ``capacity``
    items wait in the buffer, plus the one in the producer's hand (``overflow="wait"``, the
    default; ``"drop_oldest"`` and ``"drop_newest"`` never block the producer and count what
    they drop). Items already buffered are delivered before a producer's error is raised.
    Leaving the block stops the producer, as leaving `Stream.open` does. A `BufferedStream`
    is iterated once: a second ``async for`` raises `RuntimeError` rather than splitting the
    items between two loops.
    """

    __slots__ = ("_capacity", "_feed", "_iterated", "_iterator", "_opening")

    def __init__(self, stream: Stream[T], capacity: int, *, overflow: Overflow = "wait") -> None:
        node: Node[T] | None = getattr(stream, "_node", None)
        if not is_node(node):
            raise TypeError(
                f"BufferedStream() needs stream to be a beluga_trio Stream, got "
                f"{type(stream).__name__} {stream!r}"
            )
        self._capacity = capacity
        self._opening = StreamOpening(BufferNode(node, capacity, overflow, self._opened))
        self._feed: Feed[T] | None = None
        self._iterator: StreamIterator[T] | None = None
        self._iterated = False

    def _opened(self, feed: Feed[T]) -> None:
        self._feed = feed

    async def __aenter__(self) -> Self:
        self._iterator = await self._opening.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # ASYNC102: the block's cleanup, exactly as StreamOpening.__aexit__.
        await self._opening.__aexit__(exc_type, exc, tb)  # noqa: ASYNC102

    def __aiter__(self) -> StreamIterator[T]:
        if self._iterator is None:
            raise RuntimeError("iterate a BufferedStream inside its `async with` block")
        if self._iterated:
            raise RuntimeError(
                "a BufferedStream is iterated once; a second loop would split its items "
                "between the two"
            )
        self._iterated = True
        return self._iterator

    def __len__(self) -> int:
        """The items waiting in the buffer now (Go's ``Len``)."""
        return 0 if self._feed is None else self._feed.fill()

    @property
    def capacity(self) -> int:
        """The most items that wait in the buffer (Go's ``Cap``)."""
        return self._capacity

    def statistics(self) -> BufferStatistics:
        """Capacity, items waiting now, the peak, and the items dropped so far."""
        if self._feed is None:
            raise RuntimeError("a BufferedStream has statistics once its block is entered")
        return _statistics(self._feed)
