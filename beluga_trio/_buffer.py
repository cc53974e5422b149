"""Read-ahead buffers: ``s.buffer(capacity, overflow)`` and `BufferedStream` (Go's
``BufferedStream``)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, Literal, Self, TypeVar, final, get_args

import attrs
import trio

from ._channel import ChannelPull, Tasks
from ._opening import StreamIterator, StreamOpening
from ._stage import AsyncPull, Node, Pull, Scope, as_async

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["BufferNode", "BufferStatistics", "BufferedStream", "Overflow"]

T = TypeVar("T")

Overflow = Literal["wait", "drop_oldest", "drop_newest"]
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


@final
class _Buffer(Generic[T]):
    """One opened buffer: a pump task reading ahead into a bounded channel."""

    __slots__ = (
        "_capacity",
        "_evicted",
        "_overflow",
        "_peak",
        "_placed",
        "_rx_for_eviction",
        "_tx",
        "_upstream",
        "discarded",
        "output",
        "tasks",
    )

    def __init__(self, upstream: AsyncPull[T], capacity: int, overflow: Overflow) -> None:
        self._upstream = upstream
        self._capacity = capacity
        self._overflow: Overflow = overflow
        tx, rx = trio.open_memory_channel[T](capacity)
        self._tx = tx
        self._rx_for_eviction = rx.clone() if overflow == "drop_oldest" else None
        self.tasks = Tasks()
        self.tasks.when_all_done(self._close)
        self.output = ChannelPull(rx, self.tasks)
        self._placed = 0  # items put in the channel
        self._evicted = 0  # items taken out again by drop_oldest
        self.discarded = 0  # items never put in, by drop_newest
        self._peak = 0

    def _close(self) -> None:
        self._tx.close()
        if self._rx_for_eviction is not None:
            self._rx_for_eviction.close()

    def __len__(self) -> int:
        return self._placed - self._evicted - self.output.received

    def statistics(self) -> BufferStatistics:
        return BufferStatistics(
            capacity=self._capacity,
            overflow=self._overflow,
            buffered=len(self),
            peak=self._peak,
            dropped=self._evicted + self.discarded,
        )

    async def run(self) -> None:
        upstream_pull = self._upstream.pull
        send_nowait = self._tx.send_nowait
        output = self.output
        overflow = self._overflow
        try:
            while True:
                try:
                    item = await upstream_pull()
                except StopAsyncIteration:
                    return
                try:
                    send_nowait(item)
                except trio.WouldBlock:
                    if overflow == "wait":
                        await self._tx.send(item)  # backpressure: one item in hand
                    elif overflow == "drop_newest":
                        self.discarded += 1
                        continue
                    else:
                        assert self._rx_for_eviction is not None
                        self._rx_for_eviction.receive_nowait()
                        self._evicted += 1
                        send_nowait(item)
                self._placed += 1
                buffered = self._placed - self._evicted - output.received
                self._peak = max(self._peak, buffered)
        except trio.BrokenResourceError:
            return  # the consumer has gone


@final
class BufferNode(Node[T]):
    __slots__ = ("_capacity", "_on_open", "_overflow", "_upstream")

    def __init__(
        self,
        upstream: Node[T],
        capacity: int,
        overflow: Overflow,
        on_open: Callable[[_Buffer[T]], object] | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"buffer() needs an int capacity, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"buffer() needs a capacity >= 1, got {capacity}")
        if overflow not in _OVERFLOWS:
            raise ValueError(f"buffer() overflow must be one of {_OVERFLOWS}, got {overflow!r}")
        self._upstream = upstream
        self._capacity = capacity
        self._overflow: Overflow = overflow
        self._on_open = on_open

    def describe(self) -> str:
        return f"{self._upstream.describe()} | buffer({self._capacity}, {self._overflow!r})"

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = as_async(await self._upstream.open(scope))
        buffer = _Buffer(upstream, self._capacity, self._overflow)
        scope.add(buffer.tasks)
        buffer.tasks.start(await scope.nursery(), buffer.run, name="buffer")
        if self._on_open is not None:
            self._on_open(buffer)
        return buffer.output


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

    __slots__ = ("_buffer", "_capacity", "_iterated", "_iterator", "_opening")

    def __init__(self, stream: Stream[T], capacity: int, *, overflow: Overflow = "wait") -> None:
        node: Node[T] | None = getattr(stream, "_node", None)
        if not isinstance(node, Node):
            raise TypeError(f"BufferedStream() needs a Stream, got {stream!r}")
        self._capacity = capacity
        self._opening = StreamOpening(BufferNode(node, capacity, overflow, self._opened))
        self._buffer: _Buffer[T] | None = None
        self._iterator: StreamIterator[T] | None = None
        self._iterated = False

    def _opened(self, buffer: _Buffer[T]) -> None:
        self._buffer = buffer

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
        return 0 if self._buffer is None else len(self._buffer)

    @property
    def capacity(self) -> int:
        """The most items that wait in the buffer (Go's ``Cap``)."""
        return self._capacity

    def statistics(self) -> BufferStatistics:
        """Capacity, items waiting now, the peak, and the items dropped so far."""
        if self._buffer is None:
            raise RuntimeError("a BufferedStream has statistics once its block is entered")
        return self._buffer.statistics()
