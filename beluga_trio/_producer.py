"""Lock-step producers: an async iterator run in its own task, one item per request.

A ``@stream`` body may hold a cancel scope or a nursery across ``yield``; that is only safe
if every step of the generator runs in one task that is not the consumer's (trio #264,
#638). So the generator runs in a task of the opening's nursery, and hands items to the
consumer strictly on request:

* the producer task parks until the consumer asks for an item, runs the body up to its next
  ``yield``, hands the item over and parks again, so the body runs only while someone is
  waiting for an item and never computes one that no one asked for;
* a request cancelled by a timeout leaves no credit behind: the item in flight is held and
  given to the next request, and nothing further is started;
* the hand-over uses ``wait_task_rescheduled``/``reschedule`` directly: two task switches
  per item, the least a task boundary allows (a memory channel adds a third).

Stopping: a parked producer is woken and closes its generator *without* being cancelled, so
its ``finally`` can still await (a graceful close); a producer interrupted in the middle of an
item is cancelled, through its own cancel scope. Either way the generator is closed in the
task that ran it. The task never raises: its outcome goes to the consumer, and errors from
the generator's cleanup are reported when the opening closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final, NoReturn, TypeVar, final

import trio
from trio.lowlevel import Abort, RaiseCancelT, Task, current_task, reschedule

from ._stage import AsyncPull, Resource, replaced_cancellation

__all__ = ["Producer"]

T = TypeVar("T")

# What the hand-over slot holds.
_EMPTY: Final = 0  # nothing: the consumer must ask
_ITEM: Final = 1  # an item, given to the next request
_END: Final = 2  # the iterator is exhausted
_ERROR: Final = 3  # the iterator raised; given to the next request, then _END
_CANCELLED: Final = 4  # the producer was cancelled by a scope outside this opening


@final
class Producer(AsyncPull[T], Resource):
    """Runs ``make_iterator()`` in a task of the opening's nursery, in lock-step.

    The consumer side is `pull`; the task side is `run`. trio runs one task at a time, so
    the state needs no lock: each side reads it after the other has parked or woken it.
    """

    __slots__ = (
        "_busy",
        "_cancel_scope",
        "_cleanup_errors",
        "_done",
        "_iterator",
        "_kind",
        "_make_iterator",
        "_parked",
        "_requested",
        "_stopping",
        "_value",
        "_waiter",
    )

    def __init__(self, make_iterator: Callable[[], AsyncIterator[T]]) -> None:
        self._make_iterator = make_iterator
        self._iterator: AsyncIterator[T] | None = None
        self._cancel_scope = trio.CancelScope()
        self._done = trio.Event()
        self._parked: Task | None = None  # the producer task, while it waits for a request
        self._waiter: Task | None = None  # the consumer task, while it waits for the slot
        self._busy = False  # the producer task is inside the iterator's __anext__
        self._requested = False  # a request is outstanding
        self._stopping = False
        self._kind = _EMPTY
        # An item (a T) or an exception, depending on _kind; Any spares a cast per item.
        self._value: Any = None
        self._cleanup_errors: list[BaseException] = []

    # ------------------------------------------------------------------ consumer side

    async def pull(self) -> T:
        if self._kind == _EMPTY:
            if not self._requested:
                self._requested = True
                producer = self._parked
                if producer is not None:
                    self._parked = None
                    reschedule(producer)
            self._waiter = current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
        if self._kind == _ITEM:
            value: T = self._value
            self._kind, self._value = _EMPTY, None
            return value
        return await self._final_outcome()

    def _abort_wait(self, _: RaiseCancelT) -> Abort:
        # The request stays outstanding: the item in flight is held for the next one.
        self._waiter = None
        return Abort.SUCCEEDED

    async def _final_outcome(self) -> NoReturn:
        kind, error = self._kind, self._value
        if kind == _ERROR:
            self._kind, self._value = _END, None
            try:
                raise error
            finally:
                del error  # no reference cycle through this frame
        if kind == _CANCELLED:
            # The producer was cancelled by a scope that may not cover the consumer (a
            # consumer shielded while it waits). A cancelled consumer raises its own
            # Cancelled; otherwise the stream cannot go on and must not look finished.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.BrokenResourceError(
                "the stream's producer was cancelled by a cancel scope that does not cover "
                "this consumer, so the stream cannot continue"
            )
        raise StopAsyncIteration

    # ------------------------------------------------------------------ resource side

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        producer = self._parked
        if producer is not None:
            # Graceful: the generator is closed at its `yield`, not cancelled.
            self._parked = None
            reschedule(producer)
        elif self._busy:
            # In the middle of an item no one will take: interrupt it.
            self._cancel_scope.cancel()
        # Otherwise the task has not run yet, or was woken and not yet resumed, or has
        # finished; it checks _stopping before doing anything else.

    async def wait_stopped(self) -> None:
        if not self._done.is_set():  # a set Event's wait() still takes a schedule point
            await self._done.wait()

    def take_errors(self) -> list[BaseException]:
        # Only cleanup errors. An error the generator raised for a request that was then
        # cancelled and never renewed is part of the stream the consumer did not read, like
        # an item: it is dropped with the rest of the stream, as a generator's would be.
        errors, self._cleanup_errors = self._cleanup_errors, []
        return errors

    # ------------------------------------------------------------------ producer task

    async def run(self) -> None:
        """The producer task's body. Never raises: a task of ours never raises into the
        opening's nursery (that would wrap errors in groups); outcomes go to the consumer."""
        try:
            with self._cancel_scope:
                try:
                    await self._serve()
                finally:
                    # Runs cancelled only when the consumer is cancelled, or left while an
                    # item was in progress; a producer parked at `yield` is closed cleanly.
                    await self._close_iterator()  # noqa: ASYNC102 - see above
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - handed over, see docstring
            # Cancelled by a scope outside this opening, or KeyboardInterrupt.
            self._settle(_CANCELLED if isinstance(exc, trio.Cancelled) else _ERROR, exc)
        finally:
            self._done.set()

    async def _serve(self) -> None:
        while not self._stopping:
            if not self._requested:
                self._parked = current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort_park)
                continue  # woken by a request, or by stop()
            self._busy = True
            try:
                if self._iterator is None:
                    self._iterator = self._make_iterator()
                item = await self._iterator.__anext__()
            except StopAsyncIteration:
                self._settle(_END, None)
                return
            except trio.Cancelled:
                raise  # ours (stop()) is caught by our scope; any other is handed over by run()
            except BaseException as exc:  # noqa: BLE001 - the consumer raises this very object
                if replaced_cancellation(exc):
                    # The body's cleanup (a `finally`) replaced a cancellation with an error.
                    # That is a cleanup error, reported when the opening closes, never
                    # dropped with unread items.
                    self._cleanup_errors.append(exc)
                    self._settle(_CANCELLED, None)
                    return
                self._settle(_ERROR, exc)
                return
            finally:
                self._busy = False
            self._settle(_ITEM, item)

    def _abort_park(self, _: RaiseCancelT) -> Abort:
        self._parked = None
        return Abort.SUCCEEDED

    def _settle(self, kind: int, value: object) -> None:
        """Hand an outcome (an item, the end, an error) to the slot; wake a waiting consumer.

        The request is answered either way: a consumer whose request was cancelled finds it
        in the slot at its next pull, and nothing further is started until then."""
        self._requested = False
        self._kind, self._value = kind, value
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            reschedule(waiter)

    async def _close_iterator(self) -> None:
        iterator, self._iterator = self._iterator, None
        aclose = getattr(iterator, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except BaseExceptionGroup as group:
            # A nursery in the body wraps the GeneratorExit thrown in by aclose().
            _, rest = group.split(GeneratorExit)
            if rest is not None:
                self._cleanup_errors.append(rest)
        except GeneratorExit:
            pass
        except trio.Cancelled:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported when the opening closes
            self._cleanup_errors.append(exc)
