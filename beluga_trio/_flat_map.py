"""``s.flat_map(fn, concurrency=n)`` and ``s.switch_map(fn)``: a stream per item, flattened.

``fn(item)`` returns a `Stream` (cold: calling ``fn`` only builds it), called exactly once
per item. Every inner stream is opened in a scope of its own (`._nested`) and stopped as soon
as it has ended or is no longer wanted.

* ``flat_map`` with ``concurrency=1`` runs in the consumer's task: each inner stream is
  drained in order, then closed before the next item of the outer stream is taken.
* ``flat_map`` with ``concurrency=n`` runs a feeder task that takes an outer item whenever
  fewer than n inner streams are running and starts a task for its inner stream; their items
  meet in one bounded channel, in arrival order.
* ``switch_map`` runs a driver task that reads the outer stream all the time, and a runner
  task that runs the inner streams one after another; a new item cancels the running inner
  stream, waits until it has stopped (its cleanup has run), and only then hands the next one
  to the runner (one task for every inner stream, rather than a task each: a switch costs a
  task start less). Items pass to the consumer through a channel without room (a
  rendezvous), so an item of a stream that was switched away from is never delivered after
  the switch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Generic, TypeVar, final

import attrs
import trio

from ._feed import Feed
from ._nested import Chunks, Nested, call_for_node, chunked
from ._outcome import find_fatal, raise_fatal
from ._stage import NOT_READY, AsyncPull, Node, Pull, Resource, Scope
from ._tasks import Tasks
from ._util import describe
from ._validate import RETURNS_A_STREAM, count, function

__all__ = ["FlatMapNode", "SwitchMapNode"]

T = TypeVar("T")
U = TypeVar("U")

#: Items of the running inner streams that may wait for the consumer (flat_map, n > 1).
FLAT_MAP_CAPACITY: Final = 64


@attrs.frozen(eq=False)
class _FnNode(Node[U]):
    name: ClassVar[str]
    _upstream: Node[Any]
    _fn: Callable[[Any], Any] = attrs.field(validator=function(plain=RETURNS_A_STREAM))

    def _inner(self, item: object) -> Node[U]:
        return call_for_node(self._fn, item, self.name)


# ----------------------------------------------------------------------------- flat_map


@final
@attrs.frozen(eq=False)
class FlatMapNode(_FnNode[U]):
    name: ClassVar[str] = "flat_map"
    _concurrency: int = attrs.field(validator=count(minimum=1))

    def describe(self) -> str:
        return (
            f"{self._upstream.describe()} | flat_map({describe(self._fn)}, "
            f"concurrency={self._concurrency})"
        )

    async def open(self, scope: Scope) -> Pull[U]:
        mark = scope.mark()
        upstream = await self._upstream.open(scope)
        nested = Nested(await scope.nursery())
        scope.add(nested)
        if self._concurrency == 1:
            return _FlatMap(upstream, self._inner, nested)
        run: _ConcurrentFlatMap[U] = _ConcurrentFlatMap(
            upstream, self._inner, nested, self._concurrency, scope.since(mark)
        )
        scope.add(run.tasks)
        run.tasks.start(await scope.nursery(), run.feed, name=f"flat_map {describe(self._fn)}")
        return run.output


@final
class _FlatMap(AsyncPull[U]):
    """One inner stream at a time, in the consumer's task. The node ``fn`` returned is held
    until its stream is open, so a cancelled request never calls ``fn`` again."""

    __slots__ = ("_current", "_inner", "_nested", "_node", "_scope", "_upstream")

    def __init__(
        self, upstream: AsyncPull[Any], inner: Callable[[Any], Node[U]], nested: Nested
    ) -> None:
        self._upstream = upstream
        self._inner = inner
        self._nested = nested
        self._node: Node[U] | None = None
        self._current: AsyncPull[U] | None = None
        self._scope: Scope | None = None

    async def _open_next(self) -> AsyncPull[U]:
        """Stop the inner stream that has ended, then open the next one and make it current
        (`StopAsyncIteration` at the end of the outer stream)."""
        if self._scope is not None:
            await self._nested.close(self._scope)  # the ended inner stream stops first
            self._scope = None
        if self._node is None:
            item = self._upstream.poll()
            if item is NOT_READY:
                item = await self._upstream.pull()
            self._node = self._inner(item)
        scope, pull = await self._nested.open(self._node)
        self._node = None
        self._scope = scope
        current = self._current = chunked(pull, self._nested.budget)
        return current

    async def pull(self) -> U:
        while True:
            current = self._current
            if current is None:
                current = await self._open_next()
            try:
                return await current.pull()
            except StopAsyncIteration:
                self._current = None

    async def pull_some(self) -> Sequence[U]:
        while True:
            current = self._current
            if current is None:
                try:
                    current = await self._open_next()
                except StopAsyncIteration:
                    return ()
            items = await current.pull_some()
            if type(current) is Chunks and current.ended:
                self._current = None  # the next call moves on without asking it again
            if items:
                return items
            self._current = None


@final
class _ConcurrentFlatMap(Generic[U]):
    """Up to n inner streams at once, each pumped into one channel by a task of its own."""

    __slots__ = ("_feed", "_inner", "_nested", "_slots", "_upstream", "output", "tasks")

    def __init__(
        self,
        upstream: AsyncPull[Any],
        inner: Callable[[Any], Node[U]],
        nested: Nested,
        concurrency: int,
        also_stop: tuple[Resource, ...],
    ) -> None:
        # The first error stops the feeder, every inner stream and the upstream stages.
        self.tasks = Tasks(also_stop=also_stop)
        self._feed: Feed[U] = Feed(FLAT_MAP_CAPACITY, "wait", self.tasks)
        self.tasks.when_all_done(self._feed.close)
        self.output = self._feed.output
        self._upstream = upstream
        self._inner = inner
        self._nested = nested
        self._slots = trio.Semaphore(concurrency)

    async def feed(self) -> None:
        """Start an inner stream per outer item while a slot is free; wait for them all.

        An error from the outer stream (or from ``fn``, called here) is held while the inner
        streams already started run to their end, then raised as itself."""
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as workers:
                try:
                    while True:
                        await self._slots.acquire()
                        try:
                            item = await self._upstream.pull()
                        except StopAsyncIteration:
                            break
                        # fn is never called once the stage is stopping (for an unwanted item).
                        await trio.lowlevel.checkpoint_if_cancelled()
                        workers.start_soon(self._run_inner, self._inner(item))
                except trio.Cancelled:
                    raise
                except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                    # After the first error (an inner stream's) the stage has stopped its
                    # upstream (closing a channel it reads, say): what reading it raises now is
                    # past the end of the stream, a position never reached.
                    if not self.tasks.errors:
                        error = exc
                except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt: never dropped
                    error = exc
        finally:
            if error is not None and find_fatal(error) is not None:
                raise_fatal(error)  # not dropped when the stop's Cancelled ends the wait
        if error is not None:
            raise error

    async def _run_inner(self, node: Node[U]) -> None:
        try:
            scope, pull = await self._nested.open(node)
            await self._feed.pump(pull)
            await self._nested.close(scope)
        except trio.Cancelled:
            raise
        except BaseException as exc:  # noqa: BLE001 - ends the stream; stops the rest
            self.tasks.fail_or_interrupt(exc)
        finally:
            self._slots.release()


# --------------------------------------------------------------------------- switch_map


@final
@attrs.frozen(eq=False)
class SwitchMapNode(_FnNode[U]):
    name: ClassVar[str] = "switch_map"

    def describe(self) -> str:
        return f"{self._upstream.describe()} | switch_map({describe(self._fn)})"

    async def open(self, scope: Scope) -> Pull[U]:
        mark = scope.mark()
        upstream = await self._upstream.open(scope)
        nested = Nested(await scope.nursery())
        scope.add(nested)
        run: _SwitchMap[U] = _SwitchMap(upstream, self._inner, nested, scope.since(mark))
        scope.add(run.tasks)
        nursery = await scope.nursery()
        run.tasks.start(nursery, run.drive, name=f"switch_map {describe(self._fn)}")
        run.tasks.start(nursery, run.run, name=f"switch_map {describe(self._fn)} inner streams")
        return run.output


@final
class _Inner:
    """One item's inner stream, handed from the driver to the runner, and how to stop it."""

    __slots__ = ("cancel_scope", "done", "node")

    def __init__(self, node: Node[Any]) -> None:
        self.node = node
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()  # set when it has stopped (its cleanup has run)


@final
class _SwitchMap(Generic[U]):
    """Two tasks: the driver reads the outer stream and, per item, stops the running inner
    stream, waits until it has stopped, calls ``fn`` and hands the new one over; the runner
    runs the inner streams one after another, each in its own cancel scope."""

    __slots__ = (
        "_feed",
        "_handed",
        "_inner",
        "_nested",
        "_outer_ended",
        "_running",
        "_upstream",
        "_wake",
        "output",
        "tasks",
    )

    def __init__(
        self,
        upstream: AsyncPull[Any],
        inner: Callable[[Any], Node[U]],
        nested: Nested,
        also_stop: tuple[Resource, ...],
    ) -> None:
        self.tasks = Tasks(also_stop=also_stop)
        # No room: an item is handed over only to a consumer that is taking it.
        self._feed: Feed[U] = Feed(0, "wait", self.tasks)
        self.tasks.when_all_done(self._feed.close)
        self.output = self._feed.output
        self._upstream = upstream
        self._inner = inner
        self._nested = nested
        self._running: _Inner | None = None  # the latest inner stream, running or handed over
        self._handed: _Inner | None = None  # handed over, not yet taken by the runner
        self._outer_ended = False
        self._wake = trio.Event()  # the runner waits on it for the next inner stream

    def _hand_over(self, inner: _Inner | None) -> None:
        """Give the runner its next inner stream (None: there will be no other; the one
        handed over last still runs)."""
        if inner is None:
            self._outer_ended = True
        else:
            self._handed = inner
        self._wake.set()

    async def drive(self) -> None:
        """Read the outer stream; each item stops the running inner stream, waits until it
        has stopped, then hands its own over. At the outer end, the last inner stream runs to
        its end; an outer error stops it and ends the stream."""
        error: BaseException | None = None
        try:
            while True:
                try:
                    item = await self._upstream.pull()
                except StopAsyncIteration:
                    break
                running = self._running
                if running is not None:
                    # No item of it is delivered after the switch: not one it handed over that
                    # the consumer has not taken yet, nor one it hands over while it stops.
                    running.cancel_scope.cancel()
                    self._feed.discard()
                    await running.done.wait()
                    self._feed.discard()
                # fn is never called once the stage is stopping (for an unwanted item).
                await trio.lowlevel.checkpoint_if_cancelled()
                self._running = _Inner(self._inner(item))
                self._hand_over(self._running)
        except trio.Cancelled:
            raise
        except BaseException as exc:  # noqa: BLE001 - raised below, after the inner stream stopped
            # After an inner stream's error the stage has stopped its upstream: what reading it
            # raises now is past the end of the stream (never a KeyboardInterrupt).
            if not (self.tasks.errors and isinstance(exc, Exception)):
                error = exc
            if self._running is not None:
                self._running.cancel_scope.cancel()
        finally:
            if error is not None and find_fatal(error) is not None:
                raise_fatal(error)  # not dropped when the stop's Cancelled ends the wait
            self._hand_over(None)
        if error is not None:
            # Delivered after the inner stream's end all the same: the consumer sees the
            # stage's errors only once every task of it has returned. (Not waited for here: a
            # failing inner stream cancels this task, and the wait would drop this error.)
            raise error

    async def run(self) -> None:
        """Run each inner stream handed over, to its end or until it is switched away from,
        and stop it (its cleanup runs) before taking the next."""
        while True:
            inner = self._handed
            if inner is None:
                if self._outer_ended:
                    return
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            self._handed = None
            try:
                scope: Scope | None = None
                with inner.cancel_scope:
                    scope, pull = await self._nested.open(inner.node)
                    await self._feed.pump(pull)
                # Ended, or switched away from (while it was being opened, too): either way it
                # has stopped before the driver calls fn for the next item.
                await self._nested.close(scope)
                await self._nested.close_failed()
            except trio.Cancelled:
                raise
            except BaseException as exc:  # noqa: BLE001 - ends the stream; stops the rest
                self.tasks.fail_or_interrupt(exc)
                return
            finally:
                inner.done.set()
