"""``share(stream)``: one hot producer, many subscribers who come, go and come back.

The producer runs once, in a task of the block's nursery, and writes into one ring of the
most recent items, numbered from 0. Each subscriber is a cursor into that ring, read in the
subscriber's own task: joining, leaving and cancelling touch nothing but the cursor, so no
subscriber can block the producer or another subscriber (tokio's ``broadcast`` channel is the
model: a subscriber whose next item has been overwritten gets `LaggedError`). With
``overflow="wait"`` the producer instead waits for the slowest subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, cast, final, get_args

import attrs
import trio

from ._outcome import Kind, classify, fatal_of, is_cancellation
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    Node,
    NotReady,
    Pull,
    Resource,
    Scope,
    raise_on_leaving,
)
from ._stream import Stream

__all__ = [
    "LaggedError",
    "MissedItemsError",
    "ReplayGapError",
    "ShareOverflow",
    "Shared",
    "share",
]

T = TypeVar("T")

#: What a share does when a subscriber is ``buffer`` items behind: ``"error"`` (that
#: subscriber gets `LaggedError` when it reaches the hole; the producer never waits) or
#: ``"wait"`` (the producer waits for it: the slowest subscriber sets the pace).
ShareOverflow = Literal["error", "wait"]
_OVERFLOWS: Final = get_args(ShareOverflow)

# The producer's states.
_RUNNING: Final = 0
_ENDED: Final = 1  # the source ended: subscribers end after the last item
_FAILED: Final = 2  # the source raised: subscribers raise it after the last item
_STOPPED: Final = 3  # stopped before the source's end (block exited, cancelled, interrupted)


class MissedItemsError(Exception):
    """A subscription cannot go on without a gap: the items it needs next are gone.

    ``expected`` is the sequence number the subscription needed next, ``oldest`` the oldest
    one the share still holds; ``missed`` items are gone between them. Subscribe again (with
    ``after=None``) to continue from the share's newest items.
    """

    def __init__(self, message: str, *, expected: int, oldest: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.oldest = oldest

    @property
    def missed(self) -> int:
        """How many items the subscription would skip."""
        return self.oldest - self.expected


@final
class LaggedError(MissedItemsError):
    """A subscriber fell so far behind that the items it needed next were overwritten
    (tokio's ``RecvError::Lagged``). Only that subscriber is affected; the producer and the
    other subscribers never waited for it."""


@final
class ReplayGapError(MissedItemsError, LookupError):
    """``subscribe(after=seq)``: the item after ``seq`` is no longer in the replay window."""


def _uncancelled(exc: BaseException) -> BaseException:
    """A cleanup error that came out together with our own cancellation (in a group, as
    leaving `Stream.open` reports both), as itself when it is the only one."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    group = cast("BaseExceptionGroup[BaseException]", exc)  # isinstance loses the arg
    rest = group.split(trio.Cancelled)[1]
    if rest is not None and len(rest.exceptions) == 1:
        return _uncancelled(rest.exceptions[0])
    return group


@final
class _Hub(Generic[T]):
    """The state one share's producer and subscriptions have in common."""

    __slots__ = (
        "buffer",
        "capacity",
        "cleanup_errors",
        "closed",
        "delivered_error",
        "error",
        "error_traceback",
        "head",
        "interrupt",
        "overflow",
        "readers",
        "replay",
        "ring",
        "room",
        "scope",
        "state",
        "stopping",
        "subscriptions",
    )

    def __init__(self, replay: int, buffer: int, overflow: ShareOverflow) -> None:
        self.replay = replay
        self.buffer = buffer
        self.overflow: ShareOverflow = overflow
        # One ring holds the replay window and every subscriber's backlog.
        self.capacity = max(replay, buffer)
        self.ring: list[Any] = [None] * self.capacity
        self.head = 0  # the sequence number of the next item
        self.state = _RUNNING
        self.error: BaseException | None = None
        self.error_traceback: TracebackType | None = None
        self.delivered_error = False
        self.interrupt: BaseException | None = None  # KeyboardInterrupt / SystemExit
        self.cleanup_errors: list[BaseException] = []
        self.stopping = False  # the block asked the producer to stop
        self.closed = False  # the block has been left: no new subscriptions
        self.subscriptions: dict[_Subscription[T], None] = {}
        self.readers = trio.lowlevel.ParkingLot()  # subscriptions waiting for an item
        self.room = trio.lowlevel.ParkingLot()  # the producer, waiting for the slowest
        self.scope = trio.CancelScope()  # the producer's

    def oldest(self) -> int:
        return max(0, self.head - self.capacity)

    # ------------------------------------------------------------------------ producer

    def _extend(self, items: Iterable[T]) -> None:
        ring, capacity, head = self.ring, self.capacity, self.head
        for item in items:
            ring[head % capacity] = item
            head += 1
        self.head = head
        if self.readers:
            self.readers.unpark_all()

    def _full(self) -> bool:
        limit = self.head - self.buffer
        return any(s.cursor <= limit for s in self.subscriptions)

    async def produce(self, stream: Stream[T], block: trio.CancelScope) -> None:
        """The producer task: read ``stream`` once, into the ring. Never raises (what it
        raises is the subscribers' or the block's to raise)."""
        finished = False
        try:
            with self.scope:
                async with stream.open() as items:
                    if self.overflow == "wait":
                        async for item in items:
                            while self._full():
                                await self.room.park()
                            self._extend(iter((item,)))
                    else:
                        await items._drain(self._extend)
                    finished = True
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - handed on, see below
            kind = classify(exc, stopping=self.stopping and not finished)
            if kind is Kind.CANCELLED:
                # Not ours (ours is caught by self.scope): the block is cancelled too.
                self.state = _STOPPED
            elif kind is Kind.FATAL:
                self.state = _STOPPED
                self.interrupt = fatal_of(exc)
                block.cancel()  # the block raises it, as itself, once its body has stopped
            elif kind is Kind.CLEANUP:
                # Raised while the producer was being stopped (by the block's exit, or a
                # cancellation around the block): raised when the block exits.
                self.state = _STOPPED
                self.cleanup_errors.append(_uncancelled(exc))
            else:
                # The source's own error (or its cleanup's, after its last item): a
                # position in the stream, raised by every subscriber that reaches it.
                self.state = _FAILED
                self.error = exc
                self.error_traceback = exc.__traceback__
        else:
            self.state = _ENDED if finished else _STOPPED
        finally:
            if self.state == _RUNNING:  # pragma: no cover - every route above sets it
                self.state = _STOPPED
            self.readers.unpark_all()

    def stop(self) -> None:
        self.closed = True
        self.stopping = True
        self.scope.cancel()

    # --------------------------------------------------------------------- subscribers

    def attach(self, after: int | None) -> _Subscription[T]:
        subscription = _Subscription(self, self.start(after))
        self.subscriptions[subscription] = None
        return subscription

    def start(self, after: int | None) -> int:
        """The seq a subscription ``after`` would start at now, or the error it would get."""
        if self.closed:
            raise trio.ClosedResourceError(
                "subscribe() after the share's `async with` block has exited: its producer "
                "has stopped; subscribe inside the block"
            )
        window = max(0, self.head - self.replay)
        if after is None:
            start = window
        else:
            if after >= self.head:
                raise ValueError(
                    f"subscribe(after={after}): no such item; the share has produced "
                    f"{self.head} item(s) so far, numbered from 0"
                )
            start = after + 1
            if start < window:
                raise ReplayGapError(
                    f"subscribe(after={after}): item {start} is no longer in the replay window "
                    f"(replay={self.replay}: items {window}..{self.head - 1} are kept); "
                    f"{window - start} item(s) are gone. Subscribe with after=None to "
                    "continue from the newest items, or raise `replay`",
                    expected=start,
                    oldest=window,
                )
        return start

    def detach(self, subscription: _Subscription[T]) -> None:
        if subscription in self.subscriptions:
            del self.subscriptions[subscription]
            if self.room:
                self.room.unpark_all()  # the producer may have been waiting for it


@final
class _Subscription(AsyncPull[tuple[int, T]], Resource):
    """One opening of ``shared.subscribe()``: a cursor into the ring, read in the
    subscriber's task. Cancel-safe: the cursor moves only when an item is returned."""

    __slots__ = ("_budget", "_hub", "cursor")

    def __init__(self, hub: _Hub[T], start: int) -> None:
        self._hub = hub
        self.cursor = start
        self._budget = SCHEDULE_EVERY

    def poll(self) -> tuple[int, T] | NotReady:
        hub = self._hub
        cursor = self.cursor
        if cursor < hub.head and self._budget > 0 and cursor >= hub.head - hub.capacity:
            self._budget -= 1
            self.cursor = cursor + 1
            if hub.room:
                hub.room.unpark_all()
            return (cursor, hub.ring[cursor % hub.capacity])
        return NOT_READY

    async def pull(self) -> tuple[int, T]:
        hub = self._hub
        while True:
            item = self.poll()
            if item is not NOT_READY:
                return item
            if self.cursor < hub.oldest():
                raise self._lagged()
            if self.cursor < hub.head:
                # Out of budget: a schedule point before taking the item loses nothing.
                await trio.lowlevel.checkpoint()
                self._budget = SCHEDULE_EVERY
                continue
            if hub.state != _RUNNING:
                await self._end()
            await hub.readers.park()  # a Cancelled here leaves the cursor where it was
            self._budget = SCHEDULE_EVERY

    async def pull_some(self) -> Sequence[tuple[int, T]]:
        hub = self._hub
        if self._budget <= 0:
            await trio.lowlevel.checkpoint()  # before taking anything
            self._budget = SCHEDULE_EVERY
        cursor = self.cursor
        if cursor < hub.oldest():
            raise self._lagged()
        if cursor >= hub.head:
            try:
                return (await self.pull(),)
            except StopAsyncIteration:
                return ()
        stop = min(hub.head, cursor + self._budget)
        ring, capacity = hub.ring, hub.capacity
        items = [(seq, ring[seq % capacity]) for seq in range(cursor, stop)]
        self.cursor = stop
        self._budget -= len(items)
        if hub.room:
            hub.room.unpark_all()
        return items

    def _lagged(self) -> LaggedError:
        hub = self._hub
        oldest = hub.oldest()
        hub.detach(self)
        return LaggedError(
            f"this subscriber fell behind: it needed item {self.cursor} but the share keeps "
            f"only the newest {hub.capacity} (items {oldest}..{hub.head - 1}), so "
            f"{oldest - self.cursor} item(s) are gone. Read faster, raise `buffer`, or share "
            "with overflow='wait' to make the producer wait for the slowest subscriber",
            expected=self.cursor,
            oldest=oldest,
        )

    async def _end(self) -> None:
        """Every item has been delivered and the producer is done: end as it ended."""
        hub = self._hub
        hub.detach(self)
        if hub.state == _ENDED:
            raise StopAsyncIteration
        if hub.state == _FAILED:
            assert hub.error is not None
            hub.delivered_error = True
            raise hub.error.with_traceback(hub.error_traceback)
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled subscriber gets its own
        raise trio.BrokenResourceError(
            "the share stopped before its source ended (its `async with` block exited or was "
            "cancelled), so this subscription cannot continue"
        )

    def stop(self) -> None:
        self._hub.detach(self)

    def take_errors(self) -> list[BaseException]:
        return []


@final
@attrs.frozen(eq=False)
class _SubscriptionNode(Node[tuple[int, T]]):
    _hub: _Hub[T]
    _after: int | None

    def describe(self) -> str:
        return f"share(...).subscribe(after={self._after!r})"

    async def open(self, scope: Scope) -> Pull[tuple[int, T]]:
        subscription = self._hub.attach(self._after)
        scope.add(subscription)
        return subscription


def _check_after(after: object, role: str) -> None:
    if after is not None and (not isinstance(after, int) or isinstance(after, bool)):
        raise TypeError(f"{role}() needs after=None or an int seq, got {after!r}")
    if after is not None and after < 0:
        raise ValueError(f"{role}() needs after=None or a seq >= 0, got {after}")


@final
class Shared(Generic[T]):
    """What ``async with share(stream) as shared`` binds: subscribe to the running stream."""

    __slots__ = ("_hub",)

    def __init__(self, hub: _Hub[T]) -> None:
        self._hub = hub

    def subscribe(self, after: int | None = None) -> Stream[tuple[int, T]]:
        """A cold stream of ``(seq, item)`` pairs of the shared stream, ``seq`` counting
        from 0 as `enumerate` does.

        Opening it subscribes; leaving the ``open()`` block (or the terminal operation)
        unsubscribes, which affects neither the producer nor any other subscriber. With
        ``after=None`` it starts with the last ``replay`` items; with ``after=seq`` right
        after the item ``seq`` (a client resuming), or raises `ReplayGapError` when that item
        is no longer in the replay window. Each opening is a new subscription, checked when
        it opens.

        It then delivers every item in order, with no gap and no duplicate, and ends as the
        source ends: after the last item, or by raising the source's error (the very object)
        after the last item before it. A subscriber that falls behind by more than the share
        keeps (``max(buffer, replay)`` items) gets `LaggedError`, unless the share was made
        with ``overflow="wait"``. A subscription still open when the block exits raises
        `trio.BrokenResourceError` once it has read the items produced until then.

        Cancellation: a cancelled ``anext`` loses nothing; the next one gets the next item.
        """
        _check_after(after, "subscribe")
        if self._hub.closed:
            self._hub.attach(after)  # raises, with the reason
        return Stream(_SubscriptionNode(self._hub, after))

    def check(self, after: int | None = None) -> None:
        """Raise now what opening ``subscribe(after=after)`` would raise now, if anything
        (`trio.ClosedResourceError`, `ValueError` for a seq not produced yet,
        `ReplayGapError`): for a server that must refuse a resume before it answers."""
        _check_after(after, "check")
        self._hub.start(after)

    @property
    def produced(self) -> int:
        """How many items the producer has delivered so far (the next item's seq)."""
        return self._hub.head

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open now."""
        return len(self._hub.subscriptions)

    @property
    def done(self) -> bool:
        """Whether the producer has finished: the source ended or failed, or it was stopped."""
        return self._hub.state != _RUNNING


@final
class _ShareBlock(Generic[T]):
    """The async context manager `share` returns. Entered once."""

    __slots__ = ("_entered", "_hub", "_nursery", "_stream")

    def __init__(self, stream: Stream[T], hub: _Hub[T]) -> None:
        self._stream = stream
        self._hub = hub
        self._nursery: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._entered = False

    async def __aenter__(self) -> Shared[T]:
        if self._entered:
            raise RuntimeError("a share() block is entered once; call share() again")
        self._entered = True
        manager = trio.open_nursery()
        nursery = await manager.__aenter__()
        self._nursery = manager
        nursery.start_soon(
            self._hub.produce,
            self._stream,
            nursery.cancel_scope,
            name=f"beluga_trio share producer: {self._stream._node.describe()}",
        )
        return Shared(self._hub)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._nursery is not None, "__aexit__ without __aenter__"
        hub = self._hub
        hub.stop()
        errors: list[BaseException] = []
        try:
            # The producer raises nothing into this nursery, and the body's exception is
            # kept out of it, so that it goes on as the very same object.
            await self._nursery.__aexit__(None, None, None)  # noqa: ASYNC102 - the block's cleanup
        except BaseException as nursery_exc:  # noqa: BLE001, ASYNC103 - settled below
            errors.append(nursery_exc)
        if hub.interrupt is not None:
            if exc is not None and is_cancellation(exc):
                exc = None  # the cancellation of the body was ours, for the interrupt
            errors.append(hub.interrupt)
        errors.extend(hub.cleanup_errors)
        if hub.state == _FAILED and not hub.delivered_error and hub.error is not exc:
            assert hub.error is not None
            errors.append(hub.error)  # no subscriber received it: not lost
        await raise_on_leaving(exc, errors)  # noqa: ASYNC102 - the block's cleanup


def share(
    stream: Stream[T],
    *,
    replay: int = 0,
    buffer: int = 1024,
    overflow: ShareOverflow = "error",
) -> AbstractAsyncContextManager[Shared[T]]:
    """Run ``stream`` once, hot, for any number of subscribers who come and go.

    ::

        async with bt.share(model_reply(), replay=100) as shared:
            async with shared.subscribe().open() as items:
                async for seq, token in items:
                    ...

    Entering the block starts the producer in a task of the block's nursery; it runs
    whether or not anyone is subscribed, and the stream is opened exactly once. Leaving the
    block stops it (its ``finally`` has run when the block exits); subscribing after that
    raises `trio.ClosedResourceError`. See `Shared.subscribe` for what subscribers get.

    Each item is numbered (its ``seq``, from 0) and kept in one ring of the newest
    ``max(buffer, replay)`` items: a late subscriber starts with the last ``replay`` of them,
    and a subscriber may fall that far behind. Then ``overflow`` decides: ``"error"`` (the
    default) never makes the producer wait, and the lagging subscriber alone gets
    `LaggedError` when it reaches the gap; ``"wait"`` makes the producer wait until every
    open subscription is fewer than ``buffer`` items behind (the slowest sets the pace, as in
    `fan_out`; a subscription opened but never read then stops everyone).

    Errors: the source's error is raised, as itself, by every subscriber after the items
    before it. If no subscriber received it, leaving the block raises it, so it is never
    lost; errors raised by the producer's cleanup are raised there too.
    `KeyboardInterrupt` and `SystemExit` in the producer cancel the block's body and are
    raised by the block as themselves, never in a group.
    """
    if not isinstance(stream, Stream):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"share() needs a Stream, got {stream!r}")
    for name, value, least in (("replay", replay, 0), ("buffer", buffer, 1)):
        if not isinstance(value, int) or isinstance(value, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"share() needs an int {name}, got {value!r}")
        if value < least:
            raise ValueError(f"share() needs {name} >= {least}, got {value}")
    if overflow not in _OVERFLOWS:
        raise ValueError(f"share() overflow must be one of {_OVERFLOWS}, got {overflow!r}")
    return _ShareBlock(stream, _Hub(replay, buffer, overflow))
