"""Where streams begin: ``@stream`` producers, iterables and channels."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Final, ParamSpec, TypeVar, cast, final

import attrs
import trio

from ._exceptions import StreamConsumedError
from ._feed import ChannelPull
from ._producer import start_producer
from ._stage import AsyncPull, Node, Pull, Resource, Scope, SyncPull, SyncResource, ended
from ._stream import Stream, source_stream
from ._util import describe

__all__ = ["from_channel", "from_iterable", "stream"]

T = TypeVar("T")
P = ParamSpec("P")


@final
class _OneShot:
    """Guards a source that can be read once: the second opening raises."""

    __slots__ = ("_opened",)

    def __init__(self) -> None:
        self._opened = False

    def claim(self, what: str) -> None:
        if self._opened:
            raise StreamConsumedError(
                f"{what} reads a one-shot source that an earlier opening already consumed; "
                "build the stream from a re-iterable (a list, a range, a @stream function) "
                "to open it more than once"
            )
        self._opened = True


# ------------------------------------------------------------------------------ @stream


@final
@attrs.frozen(eq=False)
class _ProducerSource(Node[T]):
    _fn: Callable[..., AsyncIterator[T]]
    _args: tuple[Any, ...]
    _kwargs: dict[str, Any]

    def describe(self) -> str:
        return f"{describe(self._fn)}(...)"

    async def open(self, scope: Scope) -> Pull[T]:
        make = functools.partial(self._fn, *self._args, **self._kwargs)
        return await start_producer(scope, make, describe(self._fn))


def stream(fn: Callable[P, AsyncIterator[T]]) -> Callable[P, Stream[T]]:
    """Turn an async generator function into a factory of cold `Stream` objects.

    Calling the decorated function checks its arguments and returns a `Stream`; nothing
    runs until the stream is opened, and every opening runs the body from the start.

    The body runs in its own task in the nursery of the consumer's ``open()`` (or of the
    terminal operation), so it may hold a cancel scope or a nursery across ``yield``. It is
    strictly lock-step: it runs only while the consumer is waiting for an item, so after the
    consumer received k items and is not asking for another, exactly k were started (k+1
    while it asks). If a request is cancelled (a timeout around ``anext``), the item being
    computed is kept for the next request and nothing further is started.

    When the consumer leaves, a producer waiting at ``yield`` is closed there without being
    cancelled, so its ``finally`` may await; one interrupted in the middle of an item is
    cancelled. Either way its ``finally`` has run before the consumer's ``async with`` ends,
    and an exception raised there is raised from it.
    """
    if not inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"@stream decorates an async generator function (`async def` with `yield`), "
            f"got {describe(fn)!s}"
        )

    @functools.wraps(fn)
    def factory(*args: P.args, **kwargs: P.kwargs) -> Stream[T]:
        # Creating the generator binds the arguments (a TypeError here names the mistake)
        # and runs no code of the body; this object is dropped, each opening makes its own.
        fn(*args, **kwargs)
        return Stream(_ProducerSource(fn, args, kwargs))

    return factory


# ---------------------------------------------------------------------------- iterables


#: Built-in re-iterables: ``from_iterable`` needs no ABC check for them (a flat_map's ``fn``
#: often builds a stream per item from one).
_REITERABLE: Final = frozenset({range, list, tuple, str, bytes, dict, frozenset, set})
#: Built-in iterators with nothing to close (no ``close`` to look up, which fails slowly).
_EMPTY: Final[tuple[Iterable[object], ...]] = (
    range(0),
    range(1 << 64),
    [],
    (),
    "",
    "é",
    b"",
    {},
    frozenset(),
)
_CLOSELESS: Final = frozenset(type(iter(x)) for x in _EMPTY)


@final
@attrs.frozen(eq=False)
class _IterableSource(Node[T]):
    _iterable: Iterable[T]
    _once: _OneShot | None  # for an iterator (a generator object, say): it is read once

    def describe(self) -> str:
        return f"from_iterable({type(self._iterable).__name__})"

    async def open(self, scope: Scope) -> Pull[T]:
        if self._once is not None:
            self._once.claim(self.describe())
        it = iter(self._iterable)
        if type(it) in _CLOSELESS:
            return SyncPull(ended(it), bare=it)
        close = getattr(it, "close", None)
        if close is None:
            return SyncPull(ended(it))
        resource = SyncResource(close)
        scope.add(resource)
        return SyncPull(ended(it), (resource,))


@final
@attrs.frozen(eq=False)
class _AsyncIterableSource(Node[T]):
    _iterable: AsyncIterable[T]
    _once: _OneShot | None  # for an iterator (a generator object, say): it is read once

    def describe(self) -> str:
        return f"from_iterable({type(self._iterable).__name__})"

    async def open(self, scope: Scope) -> Pull[T]:
        if self._once is not None:
            self._once.claim(self.describe())
        # Run in a task like a @stream body: an async generator may hold a cancel scope
        # across yield, and a cancelled request must not finish it.
        make = functools.partial(aiter, self._iterable)
        return await start_producer(scope, make, self.describe())


def from_iterable(iterable: Iterable[T] | AsyncIterable[T]) -> Stream[T]:
    """A stream of the items of a sync or async iterable.

    A re-iterable (a list, a range) can be opened any number of times. An iterator, a
    generator object or an async generator object is a one-shot source: opening the stream a
    second time raises `StreamConsumedError`. A generator is closed when the stream is.

    Sync iterables are read in the consumer's task, fused with the sync operators that follow
    them. Async iterables are read by a lock-step producer task, exactly like a ``@stream``
    body, so a request cancelled by a timeout loses no item.
    """
    if type(iterable) in _REITERABLE:  # the common case, without four ABC checks
        return source_stream(_IterableSource(cast("Iterable[T]", iterable), None))
    if isinstance(iterable, Stream):  # pyright: ignore[reportUnnecessaryIsInstance]
        # Not in the signature (a Stream is not an iterable) but harmless to accept.
        return iterable  # pyright: ignore[reportUnknownVariableType]
    if isinstance(iterable, AsyncIterable):
        once = _OneShot() if isinstance(iterable, AsyncIterator) else None
        return Stream(_AsyncIterableSource(iterable, once))
    if isinstance(iterable, Iterable):  # pyright: ignore[reportUnnecessaryIsInstance]
        return Stream(
            _IterableSource(iterable, _OneShot() if isinstance(iterable, Iterator) else None)
        )
    raise TypeError(
        f"from_iterable() needs an iterable or an async iterable, got {type(iterable).__name__}"
    )


# ----------------------------------------------------------------------------- channels


@final
@attrs.frozen(eq=False)
class _ChannelSource(Node[T]):
    _channel: trio.abc.ReceiveChannel[T]
    _once: _OneShot = attrs.field(init=False, factory=_OneShot)

    def describe(self) -> str:
        return f"from_channel({type(self._channel).__name__})"

    async def open(self, scope: Scope) -> Pull[T]:
        self._once.claim(self.describe())
        channel = self._channel
        if isinstance(channel, trio.MemoryReceiveChannel):
            # Memory channels have nowait fast paths; closing one is synchronous.
            scope.add(SyncResource(channel.close))
            return ChannelPull(channel)
        pull = _ReceiveChannelPull(channel)
        scope.add(pull)
        return pull


@final
class _ReceiveChannelPull(AsyncPull[T], Resource):
    """Any other `ReceiveChannel`: received in the consumer's task (trio guarantees that a
    cancelled receive loses nothing; every receive is a checkpoint)."""

    __slots__ = ("_channel",)

    def __init__(self, channel: trio.abc.ReceiveChannel[T]) -> None:
        self._channel = channel

    async def pull(self) -> T:
        try:
            return await self._channel.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        except trio.ClosedResourceError as exc:
            raise trio.ClosedResourceError(
                "the channel given to from_channel() was closed by someone else while the "
                "stream was reading it; the stream closes it itself when it is closed"
            ) from exc

    def stop(self) -> None:
        pass  # closing a generic channel takes an await: wait_stopped does it

    async def wait_stopped(self) -> None:
        await self._channel.aclose()

    def take_errors(self) -> list[BaseException]:
        return []


def from_channel(channel: trio.abc.ReceiveChannel[T]) -> Stream[T]:
    """A stream of the items received from a trio `~trio.abc.ReceiveChannel`.

    The stream ends when the channel's senders are all closed, and the channel is closed when
    the stream is (its senders then get `trio.BrokenResourceError`). One-shot: a second
    opening raises `StreamConsumedError`.
    """
    if not isinstance(channel, trio.abc.ReceiveChannel):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"from_channel() needs channel to be a trio ReceiveChannel, got "
            f"{type(channel).__name__} {channel!r}"
        )
    if (
        isinstance(channel, trio.MemoryReceiveChannel)
        and channel.statistics().open_receive_channels == 0
    ):
        raise trio.ClosedResourceError(
            "from_channel() was given a receive channel that is already closed; pass an open "
            "one (the stream closes it when it is closed)"
        )
    return Stream(_ChannelSource(channel))
