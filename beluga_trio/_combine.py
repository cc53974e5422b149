"""``zip(*streams)`` and ``chain(*streams)``: several streams read as one.

``zip`` reads its sources in lock-step, in the consumer's task: one item of each, in order,
then the tuple. Items taken for a tuple that is not complete yet wait in a slot, so a
cancelled request loses nothing; when one source ends, every source is stopped at once (their
``finally`` blocks have run) before the end is delivered.

``chain`` opens each source only when the one before it has ended and has stopped, each in a
scope of its own (`._nested`), so a stream of many sources holds one of them at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, final, overload

import attrs

from ._nested import Chunks, Nested, chunked, stream_node
from ._stage import (
    AsyncPull,
    End,
    Node,
    Pull,
    Resource,
    Scope,
    SyncPull,
    ended,
    stop_and_wait,
)
from ._util import checked_items

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["ChainNode", "ZipNode", "chain", "zip"]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")

_NOTHING: Final[Any] = object()


# ---------------------------------------------------------------------------------- zip


@final
@attrs.frozen(eq=False)
class ZipNode(Node[tuple[Any, ...]]):
    _sources: tuple[Node[Any], ...]

    def describe(self) -> str:
        return "zip(" + ", ".join(s.describe() for s in self._sources) + ")"

    async def open(self, scope: Scope) -> Pull[tuple[Any, ...]]:
        mark = scope.mark()
        pulls = [await source.open(scope) for source in self._sources]
        if not pulls:
            return SyncPull(ended(iter(())))
        if all(isinstance(p, SyncPull) for p in pulls):
            sync = [p for p in pulls if isinstance(p, SyncPull)]
            resources = tuple(r for p in sync for r in p.resources)
            # A map's results are checked as they go into a tuple.
            its = [checked_items(p.it, p.check) for p in sync]
            return SyncPull(_SyncZip(its, resources), resources)
        return _Zip(pulls, scope.since(mark))


@final
class _SyncZip(Iterator[tuple[Any, ...]]):
    """Tuples from sync iterators. A partial tuple survives `Yield` (a looping stage asking
    for a schedule point); the first exhausted iterator stops every source at once."""

    __slots__ = ("_done", "_its", "_partial", "_resources")

    def __init__(self, its: list[Iterator[Any]], resources: tuple[Resource, ...]) -> None:
        self._its = its
        self._resources = resources
        self._partial: list[Any] = []
        self._done = False

    def __next__(self) -> tuple[Any, ...]:
        if self._done:
            raise End
        items = self._partial
        its = self._its
        try:
            while len(items) < len(its):
                items.append(next(its[len(items)]))
        except End:
            self._done = True
            self._partial = []
            for resource in self._resources:
                resource.stop()
            raise
        self._partial = []
        return tuple(items)


@final
class _Zip(AsyncPull[tuple[Any, ...]]):
    """Tuples from async pulls, read one after another in the consumer's task."""

    __slots__ = ("_ended", "_partial", "_pulls", "_resources")

    def __init__(self, pulls: list[AsyncPull[Any]], resources: tuple[Resource, ...]) -> None:
        self._pulls = pulls
        self._resources = resources
        self._partial: list[Any] = []
        self._ended = False

    async def pull(self) -> tuple[Any, ...]:
        if not self._ended:
            items = self._partial
            pulls = self._pulls
            try:
                while len(items) < len(pulls):
                    # If this is cancelled the items taken so far stay in the slot.
                    items.append(await pulls[len(items)].pull())
            except StopAsyncIteration:
                self._ended = True
                self._partial = []  # never delivered: a shorter source ended the zip
            else:
                self._partial = []
                return tuple(items)
        # Every source stops before the end is delivered; a cancelled wait is waited again.
        await stop_and_wait(self._resources)
        raise StopAsyncIteration


@overload
def zip(s1: Stream[T1], /) -> Stream[tuple[T1]]: ...
@overload
def zip(s1: Stream[T1], s2: Stream[T2], /) -> Stream[tuple[T1, T2]]: ...
@overload
def zip(s1: Stream[T1], s2: Stream[T2], s3: Stream[T3], /) -> Stream[tuple[T1, T2, T3]]: ...
@overload
def zip(
    s1: Stream[T1], s2: Stream[T2], s3: Stream[T3], s4: Stream[T4], /
) -> Stream[tuple[T1, T2, T3, T4]]: ...
@overload
def zip(
    s1: Stream[T1], s2: Stream[T2], s3: Stream[T3], s4: Stream[T4], s5: Stream[T5], /
) -> Stream[tuple[T1, T2, T3, T4, T5]]: ...
@overload
def zip(*streams: Stream[Any]) -> Stream[tuple[Any, ...]]: ...
def zip(*streams: Stream[Any]) -> Stream[tuple[Any, ...]]:
    """Tuples of one item of each stream, in lock-step; ends with the shortest.

    The sources are read one after another in the consumer's task, one item each per tuple
    (put ``.buffer(n)`` on a source to have it read ahead concurrently). A request cancelled
    half-way through a tuple keeps the items taken so far for the next request. When one
    source ends, every source is stopped at once, and the end is delivered once their
    ``finally`` blocks have run; the items taken for the unfinished tuple are dropped. An
    error from any source ends the zip with that error, as itself. ``zip()`` of no streams
    is empty.
    """
    from ._stream import Stream  # noqa: PLC0415 - _stream imports this module

    nodes = tuple(stream_node(s, f"zip() argument {i + 1}") for i, s in enumerate(streams))
    return Stream(ZipNode(nodes))


# -------------------------------------------------------------------------------- chain


@final
@attrs.frozen(eq=False)
class ChainNode(Node[T]):
    _sources: tuple[Node[T], ...]

    def describe(self) -> str:
        return "chain(" + ", ".join(s.describe() for s in self._sources) + ")"

    async def open(self, scope: Scope) -> Pull[T]:
        if not self._sources:
            return SyncPull(ended(iter(())))
        # Entered now, in the consumer's task, for the sources opened later.
        nested = Nested(await scope.nursery())
        scope.add(nested)
        chain = _Chain(self._sources, nested)
        await chain.open_first()
        return chain


@final
class _Chain(AsyncPull[T]):
    """One source at a time: the first opened with the chain, each next one on the first
    request after the one before it ended, and closed (stopped and waited for) before the
    next is opened."""

    __slots__ = ("_current", "_ended", "_index", "_nested", "_scope", "_sources")

    def __init__(self, sources: tuple[Node[T], ...], nested: Nested) -> None:
        self._sources = sources
        self._nested = nested
        self._index = 0
        self._current: AsyncPull[T] | None = None
        self._scope: Scope | None = None  # the opening of the current (or ended) source
        self._ended = False

    async def open_first(self) -> None:
        """Open the first source with the chain, as any stage opens its upstream (so that a
        chain left before its first item still closes, say, the channel it reads)."""
        await self._source()

    async def _source(self) -> AsyncPull[T] | None:
        """The source to read now, opened if need be; None after the last one."""
        current = self._current
        if current is None:
            if self._scope is not None:
                # The source before has ended: it stops before the next one opens.
                await self._nested.close(self._scope)
                self._scope = None
            if self._index >= len(self._sources):
                return None
            scope, pull = await self._nested.open(self._sources[self._index])
            self._index += 1
            self._scope, current = scope, chunked(pull, self._nested.budget)
            self._current = current
        return current

    async def pull(self) -> T:
        while (current := await self._source()) is not None:
            try:
                return await current.pull()
            except StopAsyncIteration:
                self._current = None
        raise StopAsyncIteration

    async def pull_some(self) -> Sequence[T]:
        while (current := await self._source()) is not None:
            items = await current.pull_some()
            if isinstance(current, Chunks) and current.ended:
                self._current = None  # the next call moves on without asking it again
            if items:
                return items
            self._current = None
        return ()


def chain(*streams: Stream[T]) -> Stream[T]:
    """The items of each stream in turn: all of the first, then all of the second, ...

    The first stream is opened with the chain; each next one only when the one before it has
    ended, and only after that one has stopped (its producer's ``finally`` has run), so at
    most one source is open at a time.
    An error from a source ends the chain with that error; the sources after it are never
    opened. ``chain()`` of no streams is empty.
    """
    from ._stream import Stream  # noqa: PLC0415 - _stream imports this module

    nodes: tuple[Node[T], ...] = tuple(
        stream_node(s, f"chain() argument {i + 1}") for i, s in enumerate(streams)
    )
    return Stream(ChainNode(nodes))
