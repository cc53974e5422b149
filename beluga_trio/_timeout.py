"""``s.timeout(*, first=None, between=None, total=None)``: time limits, in seconds.

``first`` and ``between`` are measured from each request (the ``anext`` call) to its item;
``total`` from the opening of the stream. On expiry every upstream stage is stopped at once (a
producer in the middle of an item is cancelled), and once they have all stopped the stream ends
with `trio.TooSlowError`. Any other cancellation passes through: the upstream's pulls are
cancel-safe. Items that are ready (a buffer's) are handed over without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn, TypeVar, final

import attrs
import trio

from ._sequential import Sequential
from ._stage import NOT_READY, AsyncPull, NotReady, Pull, Resource, Scope, stop_and_wait
from ._validate import seconds, to_seconds

__all__ = ["TimeoutNode"]

T = TypeVar("T")


@final
@attrs.frozen(eq=False)
class TimeoutNode(Sequential[T]):
    name: ClassVar[str] = "timeout"
    _first: float | None = attrs.field(converter=to_seconds, validator=seconds(optional=True))
    _between: float | None = attrs.field(converter=to_seconds, validator=seconds(optional=True))
    _total: float | None = attrs.field(converter=to_seconds, validator=seconds(optional=True))

    def describe_self(self) -> str:
        limits = {"first": self._first, "between": self._between, "total": self._total}
        return "timeout(" + ", ".join(f"{k}={v}" for k, v in limits.items() if v) + ")"

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[T]:
        total_deadline = math.inf if self._total is None else trio.current_time() + self._total
        return _Timeout(
            upstream,
            upstream_resources,
            first=self._first,
            between=self._between,
            total=self._total,
            total_deadline=total_deadline,
        )


@final
class _Timeout(AsyncPull[T]):
    """Each request gets ``first`` (the first item) or ``between`` seconds, measured from the
    request; the whole stream gets ``total`` seconds from its opening. The upstream pull is
    cancel-safe, so an ordinary cancellation just propagates; on expiry every upstream stage
    is stopped (a producer in the middle of an item is cancelled), and once they have all
    stopped `trio.TooSlowError` ends the stream."""

    __slots__ = (
        "_between",
        "_expired",
        "_first",
        "_got_first",
        "_resources",
        "_total",
        "_total_deadline",
        "_upstream",
    )

    def __init__(
        self,
        upstream: AsyncPull[T],
        resources: tuple[Resource, ...],
        *,
        first: float | None,
        between: float | None,
        total: float | None,
        total_deadline: float,
    ) -> None:
        self._upstream = upstream
        self._first = first
        self._between = between
        self._total_deadline = total_deadline
        self._total = total
        self._resources = resources
        self._got_first = False
        self._expired: trio.TooSlowError | None = None

    def poll(self) -> T | NotReady:
        # A ready item needs no waiting; past the total deadline, pull() raises.
        if self._expired is not None or trio.current_time() >= self._total_deadline:
            return NOT_READY
        item = self._upstream.poll()
        if item is not NOT_READY:
            self._got_first = True
        return item

    async def pull(self) -> T:
        return (await self._within_limit(False))[0]

    async def pull_some(self) -> Sequence[T]:
        return await self._within_limit(True)

    async def _within_limit(self, some: bool) -> Sequence[T]:
        """One item (or, with ``some``, the ready items: empty at the end) within the limit
        that applies to this request."""
        if self._expired is not None:
            return await self._raise_expired()
        limit = self._between if self._got_first else self._first
        deadline = self._total_deadline
        if limit is not None:
            deadline = min(deadline, trio.current_time() + limit)
        with trio.move_on_at(deadline) as cancel_scope:
            items = await self._upstream.pull_some() if some else (await self._upstream.pull(),)
            if items:
                self._got_first = True
            return items
        assert cancel_scope.cancelled_caught
        if deadline == self._total_deadline:
            self._expired = trio.TooSlowError(
                f"the stream did not end within total={self._total} s"
            )
        else:
            which = "between items" if self._got_first else "to the first item"
            self._expired = trio.TooSlowError(f"no item within {limit} s ({which})")
        return await self._raise_expired()

    async def _raise_expired(self) -> NoReturn:
        """Stop every upstream stage and wait until they have stopped (their ``finally``
        blocks have run), then raise. If that wait is cancelled, the next pull waits again:
        the stream never reads from a stopped upstream."""
        await stop_and_wait(self._resources)
        assert self._expired is not None
        raise self._expired
