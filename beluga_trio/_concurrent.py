"""``s.map(fn, concurrency=n, ordered=...)``: up to n calls of ``fn`` in flight at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, final

import trio

from ._feed import ChannelPull
from ._stage import AsyncPull, Node, Pull, Resource, Scope, as_async
from ._tasks import Tasks
from ._util import check_not_awaitable, describe, is_async_callable

__all__ = ["ConcurrentMapNode"]

T = TypeVar("T")
U = TypeVar("U")


def _limiter(concurrency: int | trio.CapacityLimiter) -> trio.CapacityLimiter:
    if isinstance(concurrency, trio.CapacityLimiter):
        return concurrency
    if not isinstance(concurrency, int) or isinstance(concurrency, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"map() concurrency must be an int or a trio.CapacityLimiter, got {concurrency!r}"
        )
    if concurrency < 1:
        raise ValueError(f"map() concurrency must be >= 1, got {concurrency}")
    return trio.CapacityLimiter(concurrency)


@final
class ConcurrentMapNode(Node[U]):
    __slots__ = ("_concurrency", "_fn", "_ordered", "_upstream", "_window")

    def __init__(
        self,
        upstream: Node[Any],
        fn: Callable[[Any], Any],
        concurrency: int | trio.CapacityLimiter,
        *,
        ordered: bool,
        window: int | None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {fn!r}")
        _limiter(concurrency)  # validate now, not at the first opening
        if window is not None and (not isinstance(window, int) or window < 1):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"map() window must be an int >= 1, got {window!r}")
        self._upstream = upstream
        self._fn = fn
        self._concurrency = concurrency
        self._ordered = ordered
        self._window = window

    def describe(self) -> str:
        limit = self._concurrency
        n = limit if isinstance(limit, int) else f"limiter({limit.total_tokens})"
        return (
            f"{self._upstream.describe()} | map({describe(self._fn)}, concurrency={n}, "
            f"ordered={self._ordered})"
        )

    async def open(self, scope: Scope) -> Pull[U]:
        mark = scope.mark()
        upstream = as_async(await self._upstream.open(scope))
        # A fresh limiter per opening for an int, so openings do not share slots; a
        # CapacityLimiter passed in is shared on purpose (Beluga's FlowController).
        limiter = _limiter(self._concurrency)
        window = self._window
        if window is None:
            tokens = limiter.total_tokens
            window = 2 * int(tokens) if tokens != math.inf else 1024
        run: _ConcurrentMap[U] = _ConcurrentMap(
            upstream, self._fn, limiter, window, ordered=self._ordered, also_stop=scope.since(mark)
        )
        scope.add(run.tasks)
        run.tasks.start(await scope.nursery(), run.feed, name=f"map {describe(self._fn)}")
        return run


@final
class _ConcurrentMap(AsyncPull[U]):
    """One opening: a feeder task starts a worker task per item, each holding a slot of the
    limiter while ``fn`` runs; results go to the consumer in input or completion order.

    Memory is bounded by the window: an item is started only while fewer than ``window``
    items are started and not yet taken by the consumer. With ``ordered=True`` results that
    finish early wait (in that window) for the ones before them, so one slow item delays
    delivery but does not idle the other slots until the window is full.
    """

    __slots__ = (
        "_fn",
        "_is_async",
        "_limiter",
        "_next_to_send",
        "_ordered",
        "_out",
        "_tx",
        "_upstream",
        "_waiting",
        "_window",
        "tasks",
    )

    def __init__(
        self,
        upstream: AsyncPull[Any],
        fn: Callable[[Any], Any],
        limiter: trio.CapacityLimiter,
        window: int,
        *,
        ordered: bool,
        also_stop: tuple[Resource, ...],
    ) -> None:
        self._upstream = upstream
        self._fn = fn
        self._is_async = is_async_callable(fn)
        self._limiter = limiter
        self._ordered = ordered
        self._window = trio.Semaphore(window)
        # Never more than `window` results exist un-taken, so send_nowait never blocks.
        self._tx, rx = trio.open_memory_channel[U](window)
        self._waiting: dict[int, U] = {}  # ordered: results that finished ahead of their turn
        self._next_to_send = 0
        # An error in fn stops the feeder, every call in flight and the upstream stages.
        self.tasks = Tasks(also_stop=also_stop)
        self.tasks.when_all_done(self._tx.close)
        self._out = ChannelPull(rx, self.tasks)

    # Consumer side: the channel, plus a window slot given back per item taken.

    async def pull(self) -> U:
        item = await self._out.pull()
        self._window.release()
        return item

    async def pull_some(self) -> Sequence[U]:
        items = await self._out.pull_some()
        for _ in items:
            self._window.release()
        return items

    # Task side.

    async def feed(self) -> None:
        """Start a worker per upstream item; wait for the workers; then end the output.

        An error from the upstream (or from a sync ``fn``, called here) is held while the
        workers' nursery closes, so that it is raised as itself, not wrapped in a group, and
        after every result of the calls already started."""
        error: BaseException | None = None
        async with trio.open_nursery() as workers:
            try:
                await self._feed(workers)
            except trio.Cancelled:
                raise
            except BaseException as exc:  # noqa: BLE001 - raised below, outside the nursery
                error = exc
        if error is not None:
            raise error

    async def _feed(self, workers: trio.Nursery) -> None:
        index = 0
        while True:
            await self._window.acquire()
            try:
                item = await self._upstream.pull()
            except StopAsyncIteration:
                return
            if self._is_async:
                token = object()
                await self._limiter.acquire_on_behalf_of(token)
                workers.start_soon(self._work, index, item, token)
            else:
                # A sync fn never runs concurrently with anything: call it here, in order,
                # so that its first error is the only one.
                result = self._fn(item)
                if index == 0:
                    check_not_awaitable(result, self._fn, "map")
                self._deliver(index, result)
            index += 1

    async def _work(self, index: int, item: Any, token: object) -> None:
        try:
            result = await self._fn(item)
        except trio.Cancelled:
            raise
        except BaseException as exc:  # noqa: BLE001 - ends the stream; cancels the rest
            self.tasks.fail(exc)
            return
        finally:
            self._limiter.release_on_behalf_of(token)
        self._deliver(index, result)

    def _deliver(self, index: int, result: U) -> None:
        if not self._ordered:
            self._tx.send_nowait(result)
            return
        self._waiting[index] = result
        while self._next_to_send in self._waiting:
            self._tx.send_nowait(self._waiting.pop(self._next_to_send))
            self._next_to_send += 1
