"""``s.map(fn, concurrency=n, ordered=...)``: up to n calls of ``fn`` in flight at once.

The calls run in a small pool of worker tasks, not in a task per item: a worker that
finishes a call takes the next item itself, so an item costs one call and no task start, no
token object and no hand-over to a feeder (see ``bench/scenarios/concurrent_map.py``). The
pool grows on demand, never past the number of calls that may be in flight.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar, final

import attrs
import trio

from ._feed import ChannelPull
from ._outcome import being_stopped, fatal_of, find_fatal, is_cancellation
from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    AsyncPull,
    End,
    Node,
    NotReady,
    Pull,
    Resource,
    Scope,
    SyncPull,
    Yield,
    stop_iteration_error,
)
from ._tasks import Tasks
from ._util import check_not_awaitable, checked_items, describe, is_async_callable
from ._validate import boolean, check_bool, check_count, count, function

__all__ = ["ConcurrentMapNode", "check_sequential_options"]

T = TypeVar("T")
U = TypeVar("U")

#: The default window of a limiter with infinitely many tokens (2 x tokens otherwise).
UNBOUNDED_WINDOW: Final = 1024

_NO_ERROR: Final = math.inf  # the position of "no error": after every item
_WAIT: Final[Any] = object()  # no item without waiting at the gate
_DONE: Final[Any] = object()  # no more items start
_NO_ROOM: Final[Any] = object()  # the window is full


# ------------------------------------------------------------------------------------ node


def check_sequential_options(ordered: object, window: object) -> None:
    """Refuse, when the stream is built, the options of a ``map`` without ``concurrency``
    that do not apply to it (the concurrent map's node checks its own)."""
    check_bool("map", "ordered", ordered)
    if window is not None:
        raise TypeError(
            f"map() needs window to be None without concurrency (it bounds a concurrent map), "
            f"got {type(window).__name__} {window!r}; pass concurrency=n too, or leave window out"
        )


def _limit(node: ConcurrentMapNode[Any], field: attrs.Attribute[Any], value: object) -> None:
    """An int >= 1, or a `trio.CapacityLimiter` with at least one token."""
    if isinstance(value, trio.CapacityLimiter):
        if value.total_tokens < 1:
            raise ValueError(
                "map() needs concurrency to be an int >= 1 or a trio.CapacityLimiter with at "
                f"least 1 token, got one with total_tokens={value.total_tokens!r} (no call "
                "could ever start)"
            )
        return
    check_count(node.name, "concurrency", value, minimum=1, alternative="a trio.CapacityLimiter")


@final
@attrs.frozen(eq=False)
class ConcurrentMapNode(Node[U]):
    name: ClassVar[str] = "map"
    _upstream: Node[Any]
    _fn: Callable[[Any], Any] = attrs.field(validator=function())
    _concurrency: int | trio.CapacityLimiter = attrs.field(validator=_limit)
    _ordered: bool = attrs.field(kw_only=True, alias="ordered", validator=boolean)
    _window: int | None = attrs.field(
        kw_only=True, alias="window", validator=count(minimum=1, optional=True)
    )

    def describe(self) -> str:
        limit = self._concurrency
        n = limit if isinstance(limit, int) else f"limiter({limit.total_tokens})"
        return (
            f"{self._upstream.describe()} | map({describe(self._fn)}, concurrency={n}, "
            f"ordered={self._ordered})"
        )

    async def open(self, scope: Scope) -> Pull[U]:
        mark = scope.mark()
        upstream = await self._upstream.open(scope)
        run: _ConcurrentMap[U] = _ConcurrentMap(
            upstream,
            self._fn,
            self._concurrency,
            self._window,
            ordered=self._ordered,
            also_stop=scope.since(mark),
        )
        scope.add(run.tasks)
        scope.add(run.leftovers)
        run.tasks.start(await scope.nursery(), run.supervise, name=f"map {describe(self._fn)}")
        return run


# --------------------------------------------------------------------------------- opening


@final
class _Leftovers(Resource):
    """Errors raised by calls the stage had already stopped (cleanup errors), reported when
    the opening closes: never dropped, never taken for the stream's error."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def stop(self) -> None:
        pass  # the calls are stopped with the stage's tasks

    def take_errors(self) -> list[BaseException]:
        errors, self.errors = self.errors, []
        return errors


@final
class _Worker:
    """One task of the pool: its cancel scope, and the index of the item it is calling ``fn``
    on (-1 between calls), so that an error can stop exactly the calls after it."""

    __slots__ = ("abort", "index", "scope", "task")

    def __init__(self, room: _Room) -> None:
        self.scope = trio.CancelScope()
        self.index = -1
        self.task: trio.lowlevel.Task | None = None

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            room.forget(self)
            return trio.lowlevel.Abort.SUCCEEDED

        self.abort = abort  # built once per worker, not once per wait


@final
class _Room:
    """Workers waiting for room in the window, woken first come, first served.

    A `trio.lowlevel.ParkingLot` without the closure, coroutine and generator it creates per
    wait: at 1,000 calls in flight a worker waits here about once per item.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: OrderedDict[_Worker, None] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    async def wait(self, worker: _Worker) -> None:
        """Wait (cancellably) until `wake` picks ``worker``."""
        self._waiting[worker] = None
        await trio.lowlevel.wait_task_rescheduled(worker.abort)

    def forget(self, worker: _Worker) -> None:
        self._waiting.pop(worker, None)

    def wake(self, n: float) -> None:
        waiting = self._waiting
        while n > 0 and waiting:
            worker, _ = waiting.popitem(last=False)
            assert worker.task is not None
            trio.lowlevel.reschedule(worker.task)
            n -= 1


@final
class _ConcurrentMap(AsyncPull[U]):
    """One opening: a pool of workers, each taking an item, calling ``fn`` and delivering the
    result; the consumer reads the results from a channel, in input or completion order.

    To take the next item a worker waits for room in the window (fewer than ``window`` items
    started and not yet taken by the consumer; each result taken wakes one waiting worker),
    then passes the "gate", one worker at a time: the next upstream item and, with a shared
    limiter, a token of it, held for the call. An int ``concurrency`` needs no tokens: the
    pool has at most that many workers. A sync upstream with room and a free gate is read
    without any await (`_take_nowait`).

    Errors are positions. An error from ``fn`` on item i (ordered) stops starting items and
    cancels the calls after i at once; it is raised to the consumer after the results of
    every item before i, whose calls run to completion. Unordered, it is raised when it
    happens, after the results already delivered, and cancels every other call. An upstream
    error comes after the results of every call started before it. A call is never
    cancelled by a cancelled ``anext``, only when an error ends the stream or the consumer
    leaves; an error such a stopped call raises is reported when the opening closes.
    """

    __slots__ = (
        "_budget",
        "_busy",
        "_delivered",
        "_error",
        "_error_at",
        "_failed",
        "_fatal",
        "_flowing",
        "_fn",
        "_gate",
        "_gate_busy",
        "_halted",
        "_is_async",
        "_it",
        "_limiter",
        "_name",
        "_nursery",
        "_ordered",
        "_out",
        "_room",
        "_send",
        "_size",
        "_started",
        "_taken",
        "_tx",
        "_upstream",
        "_waiting",
        "_window",
        "_workers",
        "leftovers",
        "tasks",
    )

    def __init__(
        self,
        upstream: Pull[Any],
        fn: Callable[[Any], Any],
        concurrency: int | trio.CapacityLimiter,
        window: int | None,
        *,
        ordered: bool,
        also_stop: tuple[Resource, ...],
    ) -> None:
        # A sync chain is read here directly: no coroutine per item, no await in the gate. A
        # sync map's results are checked for a stray awaitable as they are taken (the chain's
        # driver, bypassed here, would check them as they leave it).
        self._it = (
            checked_items(upstream.it, upstream.check) if isinstance(upstream, SyncPull) else None
        )
        self._upstream = upstream
        self._flowing = True
        self._budget = SCHEDULE_EVERY
        self._fn = fn
        self._name = f"beluga_trio map {describe(fn)} worker"
        self._is_async = is_async_callable(fn)
        self._ordered = ordered
        if isinstance(concurrency, trio.CapacityLimiter):
            # Shared on purpose (Beluga's FlowController); its tokens may change at any time,
            # so the default window is read from it whenever it is needed.
            self._limiter: trio.CapacityLimiter | None = concurrency
            self._size = math.inf
        else:
            # A fresh bound per opening: openings do not share slots.
            self._limiter = None
            self._size = concurrency
            if window is None:
                window = 2 * concurrency
        if not self._is_async:
            self._size = 1  # a sync fn never overlaps with anything: one worker calls it
        self._window = window
        self._workers: set[_Worker] = set()
        self._busy = 0  # workers inside a call
        self._nursery: trio.Nursery | None = None
        self._gate_busy = False
        self._gate = trio.lowlevel.ParkingLot()  # workers waiting to take an item
        self._room = _Room()  # workers waiting for room in the window
        self._started = 0  # items taken from upstream (their index is their position)
        self._taken = 0  # results taken by the consumer
        self._delivered = 0  # results sent into the channel
        self._waiting: dict[int, U] = {}  # ordered: results that finished ahead of their turn
        self._halted = False  # no item is started any more
        self._error: BaseException | None = None  # the stream's error, once known
        self._error_at: float = _NO_ERROR  # its position
        self._failed = False  # the error has been handed to `tasks`: deliver nothing more
        self._fatal: BaseException | None = None  # KeyboardInterrupt or SystemExit
        # The window bounds the results in the channel; the channel itself need not.
        self._tx, rx = trio.open_memory_channel[U](math.inf)
        self._send = self._tx.send_nowait
        self.leftovers = _Leftovers()
        self.tasks = Tasks(also_stop=also_stop)
        self.tasks.when_all_done(self._tx.close)
        self._out = ChannelPull(rx, self.tasks)

    # Consumer side: the channel, plus room in the window per result taken.

    def poll(self) -> U | NotReady:
        item = self._out.poll()
        if item is not NOT_READY:
            self._took(1)
        return item

    async def pull(self) -> U:
        item = await self._out.pull()
        self._took(1)
        return item

    async def pull_some(self) -> Sequence[U]:
        items = await self._out.pull_some()
        if items:
            self._took(len(items))
        return items

    def _took(self, n: int) -> None:
        self._taken += n
        if self._room:
            self._room.wake(n)

    # Task side.

    def _window_now(self) -> float:
        window = self._window
        if window is not None:
            return window
        assert self._limiter is not None
        tokens = self._limiter.total_tokens
        return max(1, 2 * tokens) if tokens != math.inf else UNBOUNDED_WINDOW

    async def supervise(self) -> None:
        """The stage's task: the workers' nursery. Workers never raise into it (an error is
        a position in the stream, handed to `tasks` when the consumer's turn reaches it);
        a `KeyboardInterrupt` or `SystemExit` from a call cancels them all and is raised
        here, as itself."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._spawn(1)
        finally:
            self._nursery = None
            if self._fatal is not None:
                raise self._fatal  # even if the stage was being stopped: never dropped

    def _spawn(self, n: int) -> None:
        assert self._nursery is not None
        for _ in range(n):
            worker = _Worker(self._room)
            self._workers.add(worker)
            self._nursery.start_soon(self._work, worker, name=self._name)

    def _grow(self) -> None:
        """After a worker took an item: start workers for the slots no worker is ready for."""
        if self._halted:
            return
        idle = len(self._workers) - self._busy
        room = self._window_now() - (self._started - self._taken)
        if self._limiter is None:
            want = min(self._size - self._busy, room) - idle
            want = min(want, self._size - len(self._workers))
        else:
            free = self._limiter.available_tokens
            want = min(free, room)
            if want < 1 and room >= 1:
                want = 1  # one worker waits at the gate for a token (tokens may be added)
            want -= idle
        if want >= 1:
            self._spawn(int(want))

    async def _work(self, worker: _Worker) -> None:
        fn = self._fn
        is_async = self._is_async
        limiter = self._limiter
        worker.task = trio.lowlevel.current_task()
        try:
            with worker.scope:
                while True:
                    item = self._take_nowait(worker)
                    while item is _NO_ROOM:
                        await self._room.wait(worker)
                        item = self._take_nowait(worker)
                    if item is _WAIT:
                        item = await self._take(worker)
                    if item is _DONE:
                        return
                    index = worker.index
                    self._busy += 1
                    if self._busy == len(self._workers) and len(self._workers) < self._size:
                        self._grow()
                    try:
                        if being_stopped():
                            # The opening is being stopped (the consumer left, `take` had its
                            # items): no one will take this result, so the call never starts.
                            return
                        self._budget -= 1
                        if self._budget <= 0:
                            # Calls need not await: a schedule point every few hundred items,
                            # outside the gate, where no other worker waits for it.
                            self._budget = SCHEDULE_EVERY
                            await trio.lowlevel.checkpoint()
                        if is_async:
                            result = await fn(item)
                        else:
                            result = fn(item)
                            check_not_awaitable(result, fn, "map")
                    except trio.Cancelled as exc:
                        # An interrupt that a `finally` in fn replaced with this is kept.
                        self._caught_fatal(exc)
                        raise
                    except BaseException as exc:
                        if is_cancellation(exc):  # a group of Cancelled from fn's nursery
                            self._caught_fatal(exc)
                            raise
                        self._call_failed(index, exc)
                        continue
                    finally:
                        worker.index = -1
                        self._busy -= 1
                        if limiter is not None:
                            limiter.release_on_behalf_of(worker)
                    self._deliver(index, result)
        finally:
            self._workers.discard(worker)

    def _take_nowait(self, worker: _Worker) -> Any:
        """The fast path of `_take`, with no coroutine: the next item of a sync upstream when
        nothing needs waiting for (the gate is free, the window has room, no token is
        needed); `_WAIT` when `_take` must wait."""
        it = self._it
        window = self._window
        if it is None or window is None or self._limiter is not None or self._gate_busy:
            return _WAIT
        if self._halted:
            self._gate.unpark()  # a worker waiting at the gate leaves too
            return _DONE
        if self._started - self._taken >= window:
            return _NO_ROOM
        try:
            item = next(it)
        except Yield:  # the sync chain asks for a schedule point: `_take` takes it
            return _WAIT
        except End:
            self._halt()
            return _DONE
        except (StopIteration, StopAsyncIteration) as exc:  # a user's, inside the chain
            error = stop_iteration_error(exc)
            error.__cause__ = exc
            self._upstream_failed(error)
            self._gate.unpark()
            return _DONE
        except trio.Cancelled:  # never from a sync chain; flake8-async asks for it
            raise
        except BaseException as exc:  # noqa: BLE001 - a position, see _upstream_failed
            self._upstream_failed(exc)
            self._gate.unpark()
            return _DONE
        worker.index = index = self._started
        self._started = index + 1
        return item

    async def _take(self, worker: _Worker) -> Any:
        """Pass the gate: the next item (its index in ``worker.index``), or `_DONE` when no
        more items start."""
        window = self._window
        while True:
            if self._halted:
                self._gate.unpark()  # the next one leaves too
                return _DONE
            if self._gate_busy:
                await self._gate.park()
            elif self._started - self._taken >= (window or self._window_now()):
                # No room: wait for the consumer, outside the gate; n results taken let n
                # waiting workers go on, all in the next turn.
                await self._room.wait(worker)
            else:
                break
        self._gate_busy = True
        try:
            try:
                item = await self._next_upstream()
            except StopAsyncIteration:
                self._halt()
                return _DONE
            except trio.Cancelled:
                raise
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                self._upstream_failed(exc)
                return _DONE
            worker.index = index = self._started
            self._started = index + 1
            limiter = self._limiter
            if limiter is not None:
                try:
                    limiter.acquire_on_behalf_of_nowait(worker)
                except trio.WouldBlock:
                    await limiter.acquire_on_behalf_of(worker)
            return item
        finally:
            self._gate_busy = False
            if self._gate:
                if self._flowing:
                    # Items come without waiting: let through, in the next turn, as many
                    # waiting workers as the window has room for, rather than one per turn.
                    room = (window or self._window_now()) - (self._started - self._taken)
                    self._gate.unpark(count=max(1, int(room)))
                else:
                    self._gate.unpark()  # a slow upstream: one at a time, no stampede

    async def _next_upstream(self) -> Any:
        """The next upstream item; ``_flowing`` says whether it came without waiting."""
        self._flowing = True
        it = self._it
        if it is not None:
            while True:
                try:
                    return next(it)
                except End:
                    raise StopAsyncIteration from None
                except (StopIteration, StopAsyncIteration) as exc:  # a user's, in the chain
                    raise stop_iteration_error(exc) from exc
                except Yield:  # the sync chain asks for a schedule point
                    self._flowing = False
                    await trio.lowlevel.checkpoint()
        item = self._upstream.poll()
        if item is NOT_READY:
            self._flowing = False
            return await self._upstream.pull()
        return item

    def _halt(self) -> None:
        """The upstream ended: no item starts any more; waiting workers leave."""
        self._halted = True
        self._gate.unpark()
        self._room.wake(math.inf)

    # Outcomes.

    def _deliver(self, index: int, result: U) -> None:
        if self._failed or index > self._error_at:
            return  # after the stream's end
        if not self._ordered:
            self._send(result)
            self._delivered += 1
        elif index == self._delivered and not self._waiting:
            self._send(result)
            self._delivered = index + 1
        else:
            waiting = self._waiting
            waiting[index] = result
            delivered = self._delivered
            while delivered in waiting:
                self._send(waiting.pop(delivered))
                delivered += 1
            self._delivered = delivered
        if self._delivered == self._error_at:
            self._fail()

    def _call_failed(self, index: int, exc: BaseException) -> None:
        if self._caught_fatal(exc):
            return
        if isinstance(exc, StopIteration | StopAsyncIteration):
            # PEP 479: it must not look like the end of the stream (nor of a cleanup).
            error = RuntimeError(f"the map function {describe(self._fn)} raised {exc!r}")
            error.__cause__ = exc
            exc = error
        if being_stopped():
            # The call was being stopped (by an error before it, or because the consumer
            # left): what it raised is a cleanup error, not the stream's.
            self.leftovers.errors.append(exc)
            return
        if self._ordered:
            self._error_position(index, exc)
        else:
            self._error_position(self._delivered, exc)

    def _upstream_failed(self, exc: BaseException) -> None:
        if self._caught_fatal(exc):
            return
        # The upstream's own error (its cleanup errors are its own stages' to report),
        # after the results of every call started before it, in either order.
        self._error_position(self._started, exc)

    def _error_position(self, position: int, exc: BaseException) -> None:
        """The stream ends at ``position`` with ``exc``, unless it already ends before."""
        if self._failed or position >= self._error_at:
            return  # after an error already known: a sequential map never gets there
        self._error = exc
        self._error_at = position
        self._halted = True
        for worker in self._workers:
            if worker.index < 0 or worker.index > position:
                worker.scope.cancel()
        if self._delivered == position:
            self._fail()

    def _fail(self) -> None:
        assert self._error is not None
        self._failed = True
        self.tasks.fail(self._error)

    def _caught_fatal(self, exc: BaseException) -> bool:
        """`KeyboardInterrupt` and `SystemExit` are never held like a stream error: every
        call is cancelled and `supervise` raises it. Inside a group too (a nursery in ``fn``
        whose child was interrupted), or in the context of the `trio.Cancelled` that replaced
        it (a ``finally`` in ``fn`` that awaited while the call was being stopped)."""
        if find_fatal(exc) is None:
            return False
        if self._fatal is None:
            self._fatal = fatal_of(exc)
        self._halted = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        return True
