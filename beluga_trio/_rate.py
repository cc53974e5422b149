"""``s.debounce(seconds)`` and ``s.throttle(seconds, keep=...)``: rate limits for live UIs.

Both run in the consumer's task with no task of their own: while the consumer waits for an
item they read the upstream under a deadline (`trio.move_on_at`). An upstream ``pull()`` is
cancel-safe, so a deadline that passes in the middle of one loses nothing: the item in flight
stays upstream and comes with the next read. The state (the item held back, the deadline) is
kept in the stage and is absolute, so a request cancelled from outside changes nothing and
the next request goes on where it stopped.

Like every stage they read the upstream only while their consumer asks for an item: while the
consumer is busy, a lock-step producer waits. To let a producer run on while a slow consumer
is busy, put ``.buffer(1, overflow="drop_oldest")`` in front (it keeps the latest item).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Final, Literal, TypeVar, final, get_args

import attrs
import trio

from ._stage import SCHEDULE_EVERY, AsyncPull, Dropping, Node, Pull, Scope, SyncPull
from ._util import checked_items
from ._validate import choice, seconds, to_seconds

__all__ = ["DebounceNode", "Keep", "ThrottleNode"]

T = TypeVar("T")

Keep = Literal["latest", "first"]
_KEEPS: Final = get_args(Keep)

_NOTHING: Final[Any] = object()


def _clock() -> Callable[[], float]:
    """``trio.current_time``, as the run's clock's own method: a third of the cost, for the
    stages that read the time per item (the run's clock never changes)."""
    return trio.lowlevel.current_clock().current_time


class _Held(AsyncPull[T]):
    """A held-back item, and what ended the upstream (delivered after that item)."""

    __slots__ = ("_end", "_now", "_pending", "_seconds", "_upstream")

    def __init__(self, upstream: AsyncPull[T], seconds: float) -> None:
        self._upstream = upstream
        self._seconds = seconds
        self._now = _clock()
        self._pending: Any = _NOTHING
        # StopAsyncIteration() at the end, the upstream's error, or None while it runs.
        self._end: BaseException | None = None

    def _take(self) -> T:
        item: T = self._pending
        self._pending = _NOTHING
        return item

    def _raise_end(self) -> None:
        end = self._end
        if end is not None:
            if not isinstance(end, StopAsyncIteration):
                self._end = StopAsyncIteration()  # raised once, then the stream has ended
            raise end

    async def _read_until(self, deadline: float) -> None:
        """Read items into the slot (the latest wins) until ``deadline`` or the end."""
        upstream = self._upstream
        with trio.move_on_at(deadline):
            while True:
                self._pending = await upstream.pull()

    async def _read_guarded(self, deadline: float) -> None:
        try:
            await self._read_until(deadline)
        except StopAsyncIteration as end:
            self._end = end
        except Exception as exc:
            if self._pending is _NOTHING:
                raise
            self._end = exc


# ----------------------------------------------------------------------------- debounce


@final
@attrs.frozen(eq=False)
class DebounceNode(Node[T]):
    name: ClassVar[str] = "debounce"
    _upstream: Node[T]
    _seconds: float = attrs.field(converter=to_seconds, validator=seconds())

    def describe(self) -> str:
        return f"{self._upstream.describe()} | debounce({self._seconds})"

    async def open(self, scope: Scope) -> Pull[T]:
        return _Debounce(await self._upstream.open(scope), self._seconds)


@final
class _Debounce(_Held[T]):
    """An item is delivered once ``seconds`` have passed without a newer one; a newer one
    replaces it and starts the wait again. At the end (or an error) the item held back is
    delivered at once, then the end (or the error)."""

    __slots__ = ("_deadline",)

    def __init__(self, upstream: AsyncPull[T], seconds: float) -> None:
        super().__init__(upstream, seconds)
        self._deadline = math.inf

    async def pull(self) -> T:
        upstream = self._upstream
        while self._end is None:
            if self._pending is _NOTHING:
                # Nothing held back: wait for an item, as long as it takes.
                try:
                    self._pending = await upstream.pull()
                except StopAsyncIteration as end:
                    self._end = end
                    break
                self._deadline = self._now() + self._seconds
                continue
            if self._now() >= self._deadline:
                return self._take()  # quiet for `seconds`: due
            newer: Any = _NOTHING
            try:
                with trio.move_on_at(self._deadline):
                    newer = await upstream.pull()
            except StopAsyncIteration as end:
                self._end = end
            except Exception as exc:  # noqa: BLE001 - delivered after the item held back
                self._end = exc
            else:
                if newer is not _NOTHING:
                    # A newer item replaces the one held back and starts the wait again.
                    self._pending = newer
                    self._deadline = self._now() + self._seconds
        if self._pending is not _NOTHING:
            return self._take()
        self._raise_end()
        raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- throttle


@final
@attrs.frozen(eq=False)
class ThrottleNode(Node[T]):
    name: ClassVar[str] = "throttle"
    _upstream: Node[T]
    _seconds: float = attrs.field(converter=to_seconds, validator=seconds())
    _keep: Keep = attrs.field(validator=choice(_KEEPS))

    def describe(self) -> str:
        return f"{self._upstream.describe()} | throttle({self._seconds}, keep={self._keep!r})"

    async def open(self, scope: Scope) -> Pull[T]:
        upstream = await self._upstream.open(scope)
        if self._keep == "first":
            if isinstance(upstream, SyncPull):
                # Dropping never awaits: it stays in the fused sync chain.
                keep = _FirstOfPeriod(self._seconds)
                # A map's results are checked before some are dropped.
                it = checked_items(upstream.it, upstream.check)
                return SyncPull(filter(keep, it), upstream.resources)
            return _ThrottleFirst(upstream, self._seconds)
        return _ThrottleLatest(upstream, self._seconds)


@final
class _ThrottleLatest(_Held[T]):
    """At most one item per period of ``seconds``, starting from each delivery. An item that
    arrives when no period runs is delivered at once; the items that arrive during a period
    replace each other, and the latest is delivered when the period ends (which starts the
    next one). At the end (or an error) the item held back is still delivered when its period
    ends, then the end (or the error)."""

    __slots__ = ("_period_end",)

    def __init__(self, upstream: AsyncPull[T], seconds: float) -> None:
        super().__init__(upstream, seconds)
        self._period_end = -math.inf

    def _deliver(self) -> T:
        self._period_end = self._now() + self._seconds
        return self._take()

    async def pull(self) -> T:
        if self._end is None and self._now() < self._period_end:
            await self._read_guarded(self._period_end)
        if self._pending is not _NOTHING:
            # Held back during a period: due when it ends (the end of the upstream does not
            # make it due earlier: at most one item per period).
            await trio.sleep_until(self._period_end)
            return self._deliver()
        self._raise_end()
        # No period runs and nothing is held: the next item goes through at once.
        item = await self._upstream.pull()
        self._period_end = self._now() + self._seconds
        return item


@final
class _FirstOfPeriod(Dropping):
    """The predicate of ``throttle(keep="first")`` over a sync chain: true for the first item
    of each period; asks for a schedule point every few hundred dropped items (the state is
    kept)."""

    __slots__ = ("_now", "_period_end", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._period_end = -math.inf
        self.budget = SCHEDULE_EVERY
        self._now = _clock()

    def __call__(self, _: object) -> bool:
        now = self._now()
        if now >= self._period_end:
            self._period_end = now + self._seconds
            return True
        self.budget -= 1
        if self.budget <= 0:
            self.ask_for_a_schedule_point()
        return False


@final
class _ThrottleFirst(AsyncPull[T]):
    """The first item of each period of ``seconds`` is delivered at once and starts the
    period; the items that arrive during it are dropped."""

    __slots__ = ("_now", "_period_end", "_seconds", "_upstream")

    def __init__(self, upstream: AsyncPull[T], seconds: float) -> None:
        self._upstream = upstream
        self._seconds = seconds
        self._period_end = -math.inf
        self._now = _clock()

    async def pull(self) -> T:
        upstream = self._upstream
        while True:
            item = await upstream.pull()
            now = self._now()
            if now >= self._period_end:
                self._period_end = now + self._seconds
                return item
