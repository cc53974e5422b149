"""Lock-step producers: an async iterator run in its own task, one item per request.

A ``@stream`` body may hold a cancel scope or a nursery across ``yield``; that is only safe
if every step of the generator runs in one task that is not the consumer's (trio #264,
#638). So the generator runs in a task of the opening's nursery, and hands items to the
consumer strictly on request:

* the producer task parks until the consumer asks for an item, runs the body up to its next
  ``yield``, hands the item over and parks again, so the body runs only while someone is
  waiting for an item and never computes one that no one asked for;
* a request cancelled by a timeout leaves no credit behind: the item in flight is held and
  given to the next request, and nothing further is started; the work in flight is never
  cancelled or restarted by a cancelled request (user code runs once per item);
* the hand-over uses ``wait_task_rescheduled``/``reschedule`` directly: two task switches
  per item, the least a task boundary allows (a memory channel adds a third).

The body's own scopes are its own. While the producer is parked at ``yield``, its task is
still inside the cancel scopes the body holds across that ``yield``. When one of them is
cancelled then (its deadline passes, a child of the body's nursery fails), the cancellation
is *held*, and delivered into the body at that ``yield`` when the next item is requested: the
body's own scope catches its own cancellation and goes on, exactly as in straight-line code.
It is not delivered at once because that would run the body on to its next ``yield`` — an item
no one asked for. If the consumer leaves instead, the held cancellation is dropped and the body
is closed at its ``yield`` like any parked producer.

Stopping: a parked producer is woken and closes its generator *without* being cancelled, so
its ``finally`` can still await (a graceful close); a producer interrupted in the middle of an
item is cancelled, through its own cancel scope. Either way the generator is closed in the
task that ran it. What the body raises is classified by `._outcome.classify`: the stream's
error (handed to the consumer at its position), a cleanup error (raised when the consumer
leaves), or `KeyboardInterrupt`/`SystemExit` (raised into the opening's nursery, which ends
the opening at once).
"""

from __future__ import annotations

import enum
import functools
import types
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final, NoReturn, TypeVar, cast, final

import trio
from trio.lowlevel import (
    Abort,
    RaiseCancelT,
    Task,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from ._outcome import Kind, classify, raise_fatal, without
from ._stage import AsyncPull, Resource, Scope

__all__ = ["Producer", "start_producer"]

T = TypeVar("T")


class _Slot(enum.Enum):
    """What the hand-over slot holds."""

    EMPTY = "empty"  # nothing: the consumer must ask
    ITEM = "item"  # an item, given to the next request
    END = "end"  # the iterator is exhausted
    ERROR = "error"  # the iterator raised; given to the next request, then END
    CANCELLED = "cancelled"  # the producer was cancelled by a scope outside this opening


# Module constants: looking up an enum member on its class costs several times a global.
_EMPTY: Final = _Slot.EMPTY
_ITEM: Final = _Slot.ITEM
_END: Final = _Slot.END
_ERROR: Final = _Slot.ERROR
_CANCELLED: Final = _Slot.CANCELLED


@final
class Producer(AsyncPull[T], Resource):
    """Runs ``make_iterator()`` in a task of the opening's nursery, in lock-step.

    The consumer side is `pull`; the task side is `run`. trio runs one task at a time, so
    the state needs no lock: each side reads it after the other has parked or woken it.

    One is made per opening, so what it holds while the stream is open is kept small (a
    server holds one per client): the function that makes the iterator is dropped once
    called, the event `wait_stopped` waits on and the list of cleanup errors are made only
    when needed, and the parked task is one coroutine frame deep in this module.
    """

    __slots__ = (
        "_busy",
        "_cancel_scope",
        "_cleanup_errors",
        "_done",
        "_finished",
        "_held_cancel",
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
        # Dropped once called: it may hold the body's arguments.
        self._make_iterator: Callable[[], AsyncIterator[T]] | None = make_iterator
        self._iterator: AsyncIterator[T] | None = None
        self._cancel_scope = trio.CancelScope()
        self._done: trio.Event | None = None  # made when someone waits for the task to end
        self._finished = False  # the task has returned: nothing will fill the slot again
        self._parked: Task | None = None  # the producer task, while it waits for a request
        self._waiter: Task | None = None  # the consumer task, while it waits for the slot
        self._busy = False  # the producer task is inside the iterator
        self._requested = False  # a request is outstanding
        self._stopping = False  # this opening asked the producer to stop
        self._held_cancel: BaseException | None = None  # seen at `yield`; delivered there
        self._kind = _EMPTY
        # An item (a T) or an exception, depending on _kind; Any spares a cast per item.
        self._value: Any = None
        self._cleanup_errors: list[BaseException] | None = None  # made on the first

    # ------------------------------------------------------------------ consumer side

    async def pull(self) -> T:
        if self._kind is _EMPTY:
            if self._finished:
                self._kind = _CANCELLED
                return await self._final_outcome()
            if not self._requested:
                self._requested = True
                producer = self._parked
                if producer is not None:
                    self._parked = None
                    reschedule(producer)
            self._waiter = current_task()
            await wait_task_rescheduled(self._abort_wait)
        if self._kind is _ITEM:
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
        if kind is _ERROR:
            self._kind, self._value = _END, None
            try:
                raise error
            finally:
                del error  # no reference cycle through this frame
        if kind is _CANCELLED:
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
        if not self._finished:  # a set Event's wait() would still take a schedule point
            if self._done is None:
                self._done = trio.Event()
            await self._done.wait()

    def unread_errors(self) -> list[BaseException]:
        return [self._value] if self._kind is _ERROR else []

    def take_errors(self) -> list[BaseException]:
        # Only cleanup errors. An error the generator raised for a request that was then
        # cancelled and never renewed is part of the stream the consumer did not read, like
        # an item: it is dropped with the rest of the stream, as a generator's would be.
        errors, self._cleanup_errors = self._cleanup_errors, None
        return errors or []

    def _keep(self, error: BaseException) -> None:
        """Keep an error raised by our own cleanup code, for `take_errors`."""
        if self._cleanup_errors is None:
            self._cleanup_errors = []
        self._cleanup_errors.append(error)

    # ------------------------------------------------------------------ producer task

    async def run(self) -> None:
        """The producer task's body. Raises only `KeyboardInterrupt`/`SystemExit` (into the
        opening's nursery, which ends the opening); every other outcome goes to the consumer
        or is kept as a cleanup error."""
        try:
            with self._cancel_scope:
                try:
                    await self._serve()
                finally:
                    # Runs cancelled only when the consumer is cancelled, or left while an
                    # item was in progress; a producer parked at `yield` is closed cleanly.
                    await self._close_iterator()  # noqa: ASYNC102 - see above
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - handed over, see docstring
            kind = classify(exc, stopping=self._stopping)
            if kind is Kind.FATAL:
                raise_fatal(exc)  # into the opening's nursery: it ends the opening at once
            if kind is not Kind.CANCELLED:
                self._keep(exc)  # raised by our own cleanup code
        finally:
            self._finished = True
            if self._kind is _EMPTY:
                self._hand_over(_CANCELLED, None)  # a consumer waiting is not stranded
            if self._done is not None:
                self._done.set()

    async def _serve(self) -> None:
        while True:
            # Park until the consumer asks for an item or the opening stops the producer (in
            # this frame, not a helper's: a parked producer holds one frame less).
            while not (self._requested or self._stopping):
                self._parked = current_task()
                if self._held_cancel is not None:
                    # The body was cancelled at its `yield`; that is delivered when the next
                    # item is asked for. Until then only a request or stop() wakes the producer.
                    with trio.CancelScope(shield=True):
                        await wait_task_rescheduled(self._abort_park)
                    continue
                try:
                    await wait_task_rescheduled(self._abort_park)
                except trio.Cancelled as exc:  # noqa: ASYNC103 - held, delivered at the `yield`
                    if self._iterator is None:
                        raise  # no body yet: a cancellation from outside this opening
                    self._held_cancel = exc
            if self._stopping:
                return
            self._busy = True
            try:
                iterator = self._iterator
                if iterator is None:
                    make, self._make_iterator = self._make_iterator, None
                    assert make is not None, "the iterator is made once"
                    iterator = self._iterator = make()
                    del make  # not held by this frame while the stream is open
                held, self._held_cancel = self._held_cancel, None
                if held is not None and isinstance(iterator, types.AsyncGeneratorType):
                    # The body's own cancellation, delivered at its `yield`.
                    generator = cast("AsyncGenerator[T, None]", iterator)
                    item = await generator.athrow(held)
                else:
                    item = await iterator.__anext__()
            except StopAsyncIteration:
                self._hand_over(_END, None)
                return
            except BaseException as exc:  # noqa: ASYNC103 - classified: see the module docstring
                kind = classify(exc, stopping=self._stopping)
                if kind is Kind.FATAL:
                    raise_fatal(exc)  # see run()
                if kind is Kind.CANCELLED:
                    raise  # ours is caught by our scope; any other is handed over by run()
                if kind is Kind.ERROR:
                    self._hand_over(_ERROR, exc)  # the consumer raises this very object
                else:
                    # Raised while this opening or the consumer's scope was stopping it.
                    self._keep(exc)
                    self._hand_over(_CANCELLED, None)
                return  # noqa: ASYNC104 - handed over or kept: see above
            finally:
                self._busy = False
            self._hand_over(_ITEM, item)

    def _abort_park(self, _: RaiseCancelT) -> Abort:
        self._parked = None
        return Abort.SUCCEEDED

    def _hand_over(self, kind: _Slot, value: object) -> None:
        """Put an outcome (an item, the end, an error) in the slot; wake a waiting consumer.

        The request is answered either way: a consumer whose request was cancelled finds it
        in the slot at its next pull, and nothing further is started until then."""
        self._requested = False
        self._kind, self._value = kind, value
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            reschedule(waiter)

    async def _close_iterator(self) -> None:
        """Close the iterator in this task. An async generator is closed at its ``yield`` with
        a `GeneratorExit` of our own, so that only that very exception counts as a clean
        close: anything else it raises (a stray `GeneratorExit` from a child of its nursery
        included) is a cleanup error."""
        iterator, self._iterator = self._iterator, None
        self._held_cancel = None
        if isinstance(iterator, types.AsyncGeneratorType):
            if iterator.ag_frame is None:
                return  # finished already (athrow would do nothing)
            closing = GeneratorExit()
            try:
                await iterator.athrow(closing)
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - classified below
                self._closed_with(exc, closing)
            else:
                self._keep(RuntimeError("the stream's async generator ignored GeneratorExit"))
                await iterator.aclose()
            return
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - classified below
                self._closed_with(exc, None)

    def _closed_with(self, exc: BaseException, closing: GeneratorExit | None) -> None:
        if isinstance(exc, StopAsyncIteration):
            return  # closed cleanly
        if closing is not None:
            # A nursery in the body wraps our GeneratorExit with whatever its tasks raised.
            rest = without(exc, closing)
            if rest is None:
                return  # closed cleanly
            exc = rest
        kind = classify(exc, stopping=True)
        if kind is Kind.CLEANUP:
            self._keep(exc)
        elif kind is Kind.FATAL:
            raise_fatal(exc)
        else:
            raise exc  # a cancellation: ours is caught by our scope


async def start_producer(
    scope: Scope, make_iterator: Callable[[], AsyncIterator[T]], name: str
) -> Producer[T]:
    """Start a lock-step `Producer` of ``make_iterator()`` in the opening's nursery."""
    producer = Producer(make_iterator)
    nursery = await scope.nursery()
    scope.add(producer)
    nursery.start_soon(producer.run, name=_task_name(name))
    return producer


@functools.lru_cache(maxsize=256)
def _task_name(name: str) -> str:
    # One string per stream function, not one per opening (every open task holds its name).
    return f"beluga_trio producer: {name}"
