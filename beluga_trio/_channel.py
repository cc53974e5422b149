"""The pieces every task-backed stage is made of: tasks that never raise, and channel pulls.

`Tasks` is the `Resource` of a stage that runs background tasks (a buffer's pump, a merge's
source readers, a concurrent map's feeder): each task runs in the opening's nursery under a
cancel scope the stage owns; an exception a task raises is recorded, stops the stage's other
tasks (the first error cancels the rest), and is raised *to the consumer* after the items that
arrived before it; nothing ever raises into the nursery. `ChannelPull` is the consumer's side
of a trio memory channel, with the nowait fast paths that make a task boundary cheap (FACTS.md:
a blocking ``send``/``receive`` per item costs 15-20 times a fused chain; draining whatever is
ready with ``receive_nowait`` costs about as much as the chain itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast, final

import trio

from ._stage import SCHEDULE_EVERY, AsyncPull, Resource

__all__ = ["ChannelPull", "Tasks", "is_cancellation", "pump", "raise_errors"]

T = TypeVar("T")

# Markers for "nothing ready" and "the channel ended" (a user's item may be None).
_WAIT: Final[Any] = object()
_ENDED: Final[Any] = object()


def is_cancellation(exc: BaseException) -> bool:
    """A `trio.Cancelled`, or a group of nothing else (a nursery's way of passing one on)."""
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)  # isinstance loses the arg
        return all(is_cancellation(e) for e in group.exceptions)
    return isinstance(exc, trio.Cancelled)


def raise_errors(errors: Sequence[BaseException]) -> None:
    """Raise one error as itself, several together in one group; nothing if none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors in concurrent beluga_trio stages", list(errors))


@final
class Tasks(Resource):
    """The background tasks of one stage, stopped together.

    `start` runs ``fn()`` in the opening's nursery under its own cancel scope. When every task
    has returned, `on_all_done` callbacks run (a stage closes its output channel there, so
    the consumer sees the end only after the last item). `errors` holds what the tasks
    raised, in order; `stop` cancels them all, and `trio.Cancelled` is never recorded: a
    cancelled consumer raises its own.
    """

    __slots__ = (
        "_all_done",
        "_also_stop",
        "_cancelled",
        "_on_all_done",
        "_running",
        "_scopes",
        "cancelled_from_outside",
        "errors",
    )

    def __init__(self, also_stop: tuple[Resource, ...] = ()) -> None:
        # Upstream stages to stop with these tasks when one of them fails.
        self._also_stop = also_stop
        self._scopes: list[trio.CancelScope] = []
        self._cancelled = False
        # A task was cancelled by a scope outside the stage (the consumer's, normally).
        self.cancelled_from_outside = False
        self._running = 0
        self._all_done = trio.Event()
        self._on_all_done: list[Callable[[], object]] = []
        self.errors: list[BaseException] = []

    def start(self, nursery: trio.Nursery, fn: Callable[[], Awaitable[object]], name: str) -> None:
        scope = trio.CancelScope()
        if self._cancelled:
            scope.cancel()
        self._scopes.append(scope)
        self._running += 1
        nursery.start_soon(self._run, scope, fn, name=f"beluga_trio {name}")

    def when_all_done(self, callback: Callable[[], object]) -> None:
        self._on_all_done.append(callback)

    async def _run(self, scope: trio.CancelScope, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            with scope:
                await fn()
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - see below
            if is_cancellation(exc):
                # Not ours (ours is caught by `scope`): the consumer is cancelled too and
                # raises its own Cancelled, or, if it is shielded, ChannelPull raises for it.
                self.cancelled_from_outside = True
            else:
                self.fail(exc)  # raised to the consumer, see the class docstring
        finally:
            self._running -= 1
            if self._running == 0:
                for callback in self._on_all_done:
                    callback()
                self._all_done.set()

    def fail(self, exc: BaseException) -> None:
        """Record an error and stop every task of the stage, and the stages it reads: the
        first error ends the stage."""
        self.errors.append(exc)
        self.stop()
        for resource in self._also_stop:
            resource.stop()

    @property
    def running(self) -> bool:
        return self._running > 0

    def stop(self) -> None:
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    async def wait_stopped(self) -> None:
        if self._running:
            await self._all_done.wait()

    def take_errors(self) -> list[BaseException]:
        # Errors are the stream's outcome, raised by the consumer's pull; they are cleanup
        # errors only if the consumer left before it saw them.
        errors, self.errors = self.errors, []
        return errors


@final
class ChannelPull(AsyncPull[T]):
    """The consumer's side of a memory channel fed by a stage's tasks.

    Cancel-safe (a ``receive`` loses nothing, trio guarantees it). Takes ready items with
    ``receive_nowait`` and passes a schedule point at least every `SCHEDULE_EVERY` items.
    When the channel ends, the errors of the feeding ``tasks`` (if any) are raised, after
    every item that arrived before them; a channel that ended because its tasks were cancelled
    is not a clean end either. ``received`` counts the items taken, for statistics.
    """

    __slots__ = ("_budget", "_receive", "_receive_nowait", "_rx", "_tasks", "received")

    def __init__(self, rx: trio.MemoryReceiveChannel[T], tasks: Tasks | None = None) -> None:
        self._rx = rx
        self._receive = rx.receive
        self._receive_nowait = rx.receive_nowait
        self._tasks = tasks
        self._budget = SCHEDULE_EVERY
        self.received = 0

    async def _end(self) -> None:
        """The channel ended: raise what ended it, if anything did; once."""
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        raise_errors(tasks.take_errors())
        if tasks.cancelled_from_outside:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.BrokenResourceError(
                "a stage feeding this stream was cancelled by a cancel scope that does not "
                "cover this consumer, so the stream cannot continue"
            )

    async def pull(self) -> T:
        item: T = _WAIT
        self._budget -= 1
        if self._budget > 0:
            try:
                item = self._receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                item = _ENDED
        if item is _WAIT:
            self._budget = SCHEDULE_EVERY  # this receive is a schedule point
            try:
                item = await self._receive()
            except trio.EndOfChannel:
                item = _ENDED
        if item is _ENDED:
            await self._end()
            raise StopAsyncIteration
        self.received += 1
        return item

    async def pull_some(self) -> Sequence[T]:
        if self._budget <= 0:
            await trio.lowlevel.checkpoint()  # before taking anything: a Cancelled loses nothing
            self._budget = SCHEDULE_EVERY
        items: list[Any] = []
        receive_nowait = self._receive_nowait
        ended = False
        try:
            while len(items) < self._budget:
                items.append(receive_nowait())
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            ended = True
        if not items and not ended:
            try:
                items.append(await self._receive())
            except trio.EndOfChannel:
                ended = True
            self._budget = SCHEDULE_EVERY
        if not items:
            await self._end()  # ended: raise what ended it, if anything
            return ()
        self._budget -= len(items)
        self.received += len(items)
        return items

    def close(self) -> None:
        self._rx.close()


async def pump(pull: AsyncPull[T], tx: trio.MemorySendChannel[T]) -> None:
    """Move every item of ``pull`` into ``tx``: ``send_nowait`` first, ``send`` when full.

    Returns when the upstream ends or every receiver has closed. The upstream's own pulls
    provide the schedule points. Errors propagate to the `Tasks` running this.
    """
    send_nowait = tx.send_nowait
    upstream_pull = pull.pull
    try:
        while True:
            try:
                item = await upstream_pull()
            except StopAsyncIteration:
                return
            try:
                send_nowait(item)
            except trio.WouldBlock:
                await tx.send(item)
    except trio.BrokenResourceError:
        return  # the consumer has gone
