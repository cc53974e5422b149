"""The one mechanism by which every stage is opened, stopped and cleaned up.

A `Stream` is a chain of immutable `Node` objects. Opening a stream opens its last node,
which opens its upstream first, and so on down to the source; each node returns a *pull*,
the opened form of the stage, and registers whatever must be stopped later as a `Resource`
of the opening's `Scope`.

Every pull is an `AsyncPull` and keeps two promises:

* **cancel-safe**: if ``pull()`` raises `trio.Cancelled`, no item was lost and no user function
  was called twice; the next call delivers the item that call would have delivered;
* **never starving**: a loop of ``pull()`` calls passes a schedule point at least every
  `SCHEDULE_EVERY` source items.

Because of the first promise an operator may wrap ``pull()`` in a cancel scope (a timeout)
and retry, and a cancelled request never ends a stream early.

`SyncPull` is the pull of a *synchronous chain*: ``map``/``filter``/``take``/``skip`` with plain
functions over a synchronous source fuse into one chain of C-level iterators (`map`, `filter`)
and a few small classes, with no ``await`` anywhere in it. Such a chain cannot be interrupted
half-way through an item, so it needs no cancellation logic of its own. Its end is the `End`
signal, never `StopIteration`: a `StopIteration` that leaves a chain was raised by a user's
function, and becomes a `RuntimeError` (as PEP 479 does for generators) instead of silently
ending the stream. Stages that may loop over many source items before producing one raise
`Yield` every `SCHEDULE_EVERY` items so that `SyncPull`, the one driver of every chain, can take
a schedule point.

Background tasks (producers, pumps, workers) run in the nursery of the `Scope`, which the scope
enters in the consumer's task when the first stage asks for it, while the stream is being
opened. A task hands the outcome of its work to its pull (the consumer raises it at its position
in the stream) or records it as a cleanup error of its `Resource`; `._outcome` classifies which.
Errors therefore never pass through a nursery or a cancelled cancel scope, which would wrap them
in an exception group or copy a group the user raised; they arrive as the very same objects. The
exceptions are `KeyboardInterrupt` and `SystemExit`, which a task raises into the nursery as trio
would: that cancels the whole opening at once, and leaving raises them as themselves.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from itertools import chain, islice
from typing import Any, Final, Generic, NoReturn, TypeGuard, TypeVar, final

import trio

from ._outcome import exit_error, find_fatal
from ._util import PLAIN_TYPES, check_not_awaitable, close_awaitable

__all__ = [
    "NOT_READY",
    "SCHEDULE_EVERY",
    "AsyncPull",
    "BudgetedPull",
    "Dropping",
    "End",
    "Node",
    "NotReady",
    "Pull",
    "QueuedPull",
    "Resource",
    "Scope",
    "SyncPull",
    "SyncResource",
    "Yield",
    "is_node",
    "leave",
    "raise_on_leaving",
    "stop_and_wait",
    "stop_iteration_error",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: The most source items processed between two schedule points. A full checkpoint costs
#: about 25 times one stage step, so taking one per item would dominate an in-memory
#: pipeline; every 256 items costs ~1-2% and keeps deadlines and other tasks responsive.
SCHEDULE_EVERY: Final = 256


class Yield(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a sync chain to ask its driver for a schedule point.

    Never escapes beluga_trio: `SyncPull` catches it, takes a checkpoint and drives the chain
    again. Raising it consumes no item.
    """


class Dropping:
    """The schedule-point budget of a sync stage that drops items (a filter rejecting them, a
    skipped prefix): such a stage may pass over any number of source items within one step of
    its chain, so it counts what it drops and, every `SCHEDULE_EVERY`, asks the chain's driver
    for a schedule point.

    A subclass sets ``self.budget = SCHEDULE_EVERY`` in its ``__init__`` (a ``super()`` call
    there costs 2% of opening a short chain), counts inline, ``self.budget -= 1`` (a method call
    per dropped item would cost a fifth of a filter's time for an item it rejects), and calls
    `ask_for_a_schedule_point` when the budget has run out.
    """

    __slots__ = ("budget",)
    budget: int

    def ask_for_a_schedule_point(self) -> NoReturn:
        """Renew the budget and raise `Yield`."""
        self.budget = SCHEDULE_EVERY
        raise Yield


class End(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a sync chain that has ended, every time it is asked again.

    A chain's source is followed by `ENDED`, so a chain never ends with `StopIteration`.
    """


@final
class _Ended(Iterator[Any]):
    __slots__ = ()

    def __next__(self) -> Any:
        raise End


#: Follows a chain's source: ``chain(source, ENDED)``.
ENDED: Final = _Ended()


def ended(it: Iterator[T]) -> Iterator[T]:
    """``it``, followed by the `End` signal."""
    return chain(it, ENDED)


def stop_iteration_error(
    exc: BaseException, what: str = "a function of the stream"
) -> RuntimeError:
    """The `RuntimeError` that replaces a `StopIteration`/`StopAsyncIteration` raised by a user's
    function, so that it cannot end a stream silently (PEP 479). Raise it ``from exc``."""
    return RuntimeError(
        f"{what} raised {type(exc).__name__}, which must not end a stream (PEP 479); "
        "return normally or raise another exception"
    )


class Resource(abc.ABC):
    """Something an opening owns and must stop when the consumer leaves.

    `stop` asks it to stop at once and never blocks; `wait_stopped` waits (cancellably)
    until it has; errors raised while it cleaned up are kept for `take_errors`, which the
    scope reports when the opening closes. `stop` may be called early by a stage (``take``
    stops its upstream as soon as it has its items) and again by the scope; it must be
    idempotent.
    """

    __slots__ = ()

    @abc.abstractmethod
    def stop(self) -> None: ...

    async def wait_stopped(self) -> None:  # noqa: B027 - most resources stop synchronously
        """Wait until the resource has stopped. The default stops synchronously."""

    @abc.abstractmethod
    def take_errors(self) -> list[BaseException]:
        """Return, once, the errors raised while the resource cleaned up."""

    def unread_errors(self) -> list[BaseException]:
        """The stream's errors this stage holds that the consumer has not reached. They are
        dropped with the unread items, unless an interrupt cut the stream short: then they are
        chained to it, never lost."""
        return []


@final
class SyncResource(Resource):
    """A resource stopped by a plain call, such as a generator's ``close``."""

    __slots__ = ("_close", "_errors")

    def __init__(self, close: Callable[[], object]) -> None:
        self._close: Callable[[], object] | None = close
        self._errors: list[BaseException] = []

    def stop(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            try:
                close()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by leave()
                self._errors.append(exc)

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        return errors


@final
class Scope:
    """Everything one opening of a stream owns: its resources and, lazily, a nursery.

    Created by ``Stream.open()`` in the consumer's task; `aclose` is called exactly once, in
    the same task, when the consumer leaves (or when opening failed half-way). The nursery is
    entered while the stream is being opened, so the consumer's block runs inside it: `fail`
    (an error that ends the whole opening) cancels the block as a failing child task would.
    """

    __slots__ = ("_failures", "_nursery", "_nursery_manager", "_resources")

    def __init__(self, nursery: trio.Nursery | None = None) -> None:
        self._resources: list[Resource] = []
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        # Given for an inner stream opened later within an opening (flat_map, chain): it
        # shares the outer opening's nursery and never enters or exits one itself.
        self._nursery: trio.Nursery | None = nursery
        self._failures: list[BaseException] | None = None  # made on the first (one per opening)

    def add(self, resource: Resource) -> None:
        self._resources.append(resource)

    def mark(self) -> int:
        """A position: resources added after it belong to the stages opened after it."""
        return len(self._resources)

    def since(self, mark: int) -> tuple[Resource, ...]:
        return tuple(self._resources[mark:])

    @property
    def resources(self) -> tuple[Resource, ...]:
        return tuple(self._resources)

    async def nursery(self) -> trio.Nursery:
        """The nursery for this opening's background tasks, entered on first use."""
        if self._nursery is None:
            manager = trio.open_nursery()
            self._nursery = await manager.__aenter__()
            self._nursery_manager = manager
        return self._nursery

    def fail(self, exc: BaseException) -> None:
        """End the whole opening with ``exc``: it is raised when the consumer leaves, and the
        consumer's block and every task are cancelled now."""
        if self._failures is None:
            self._failures = []
        self._failures.append(exc)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def unread_errors(self) -> list[BaseException]:
        return [e for resource in self._resources for e in resource.unread_errors()]

    async def aclose(self) -> list[BaseException]:
        """Stop every resource, wait for every task, and return the errors raised.

        Resources are asked to stop in reverse order of opening (downstream first), all
        before any is waited for, so their cleanups run concurrently. Leaving the nursery
        then waits for every task; trio shields that wait, and the tasks themselves stay
        subject to the consumer's cancel scopes, so a cancelled consumer still leaves
        promptly and no task outlives this call.
        """
        errors: list[BaseException] = []
        resources = self._resources[::-1]
        for resource in resources:
            try:
                resource.stop()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by leave()
                errors.append(exc)
        for resource in resources:
            try:
                await resource.wait_stopped()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by leave()
                # Cancelled included: the rest must still be stopped; leave() lets the
                # body's exception win and re-raises the cancellation if it is still due.
                errors.append(exc)
        if self._nursery_manager is not None:
            manager, self._nursery_manager, self._nursery = self._nursery_manager, None, None
            try:
                await manager.__aexit__(None, None, None)
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by leave()
                # Only a KeyboardInterrupt/SystemExit, raised into the nursery by a task or
                # delivered to this task while it waited, comes out of here.
                errors.append(exc)
        for resource in reversed(resources):
            errors.extend(resource.take_errors())
        # Read last: tasks may still fail while the nursery is left.
        return [*self._failures, *errors] if self._failures else errors


async def leave(body: BaseException | None, scope: Scope) -> None:
    """Close ``scope`` and raise what leaving the opening raises (see `._outcome.exit_error`).
    Without an error, leaving is a cancellation point, as trio's own async calls are: a
    cancelled consumer does not walk out of the block as if nothing happened."""
    errors = await scope.aclose()
    if (body is not None and find_fatal(body) is not None) or any(
        find_fatal(e) is not None for e in errors
    ):
        errors.extend(scope.unread_errors())
    await raise_on_leaving(body, errors)


async def raise_on_leaving(body: BaseException | None, errors: list[BaseException]) -> None:
    """Raise what leaving a block raises, given its body's exception and the errors of its
    cleanup (see `._outcome.exit_error`); without an error, leaving is a cancellation point."""
    error = exit_error(body, errors)
    if error is not None:
        try:
            raise error
        finally:
            del error, errors  # no reference cycle through this frame
    if body is None:
        await trio.lowlevel.checkpoint_if_cancelled()


async def stop_and_wait(resources: Sequence[Resource]) -> None:
    """Stop every resource at once, then wait (cancellably) until each has stopped.

    For stages that end their upstream early (``take``, an expired ``timeout``). If the wait
    is cancelled, calling this again waits again: stopping is idempotent.
    """
    for resource in resources:
        resource.stop()
    for resource in resources:
        await resource.wait_stopped()


@final
class NotReady(enum.Enum):
    """The type of `NOT_READY`."""

    NOT_READY = "NOT_READY"


#: What `AsyncPull.poll` returns when no item is ready.
NOT_READY: Final = NotReady.NOT_READY


class Node(abc.ABC, Generic[T_co]):
    """One immutable step of a stream's plan. ``open`` may be called any number of times."""

    __slots__ = ()

    @abc.abstractmethod
    async def open(self, scope: Scope) -> Pull[T_co]:
        """Open this stage (and, first, its upstream) for one opening of the stream."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The stage's part of the stream's repr, e.g. ``map(str.upper)``."""


def is_node(value: object) -> TypeGuard[Node[Any]]:
    """Whether ``value`` is a `Node`: ``isinstance`` without the ABC machinery, three times
    faster (a stream is built per item by a flat_map's ``fn``)."""
    return Node in type(value).__mro__


class AsyncPull(abc.ABC, Generic[T_co]):
    """An opened stage. See the module docstring for its two promises."""

    __slots__ = ()

    @abc.abstractmethod
    async def pull(self) -> T_co:
        """The next item; `StopAsyncIteration` at the end."""

    def poll(self) -> T_co | NotReady:
        """An item that is ready now, taken without awaiting; or `NOT_READY`.

        An optional fast path (the default is never ready): stages whose items wait in a
        channel hand them over without a coroutine per item. Taking an item this way counts
        like a pull, schedule points included.
        """
        return NOT_READY

    async def pull_some(self) -> Sequence[T_co]:
        """One or more items that are ready, or an empty sequence at the end.

        Terminal operations use it. Stages that hold several ready items (buffers) return
        them all at once, which saves a call per item; the default returns one.
        """
        try:
            return (await self.pull(),)
        except StopAsyncIteration:
            return ()


Pull = AsyncPull[T_co]


class BudgetedPull(AsyncPull[T_co]):
    """An `AsyncPull` that keeps the never-starving promise with a budget, the one way every
    pull that takes items without awaiting does: ``_budget`` items may still be taken before
    the next schedule point.

    The fast paths spend it inline, with no call per item: ``poll`` takes one unit and gives
    it back when it takes nothing (so that ``pull`` counts that item), ``pull_some`` takes at
    most what is left and subtracts what it took. Once it is spent, the slow path calls
    `_schedule_point` before it takes anything (a `trio.Cancelled` there loses nothing); a
    wait that blocked was a schedule point, and starts a new budget (``_budget =
    SCHEDULE_EVERY``).
    """

    __slots__ = ("_budget",)

    async def _schedule_point(self) -> None:
        """Take the schedule point the budget asks for, and start a new budget."""
        await trio.lowlevel.checkpoint()
        self._budget = SCHEDULE_EVERY


class QueuedPull(BudgetedPull[T_co]):
    """A `BudgetedPull` whose items wait in a queue that tasks fill (a `Feed`, fan_out's
    ring): `poll` takes a ready item, and `_wait` blocks until one is ready or raises the
    queue's end. ``pull`` is those two and the budget's schedule point, once for all."""

    __slots__ = ()

    async def _wait(self) -> None:
        """Nothing is ready: wait until something is, or raise what ended the queue."""
        raise NotImplementedError

    async def pull(self) -> T_co:
        while True:
            item = self.poll()
            if item is not NOT_READY:
                return item
            if self._budget <= 1:  # poll() found the budget spent
                await self._schedule_point()
                continue
            await self._wait()


@final
class SyncPull(BudgetedPull[T_co]):
    """An opened synchronous chain, and its one driver.

    ``it`` is the chain: an iterator that never awaits and ends with `End`. Sync stages extend
    it (``SyncPull(map(fn, upstream.it), ...)``); everything else drives it through the
    `AsyncPull` methods, which own the schedule-point budget and the `Yield` signal, turn a
    user's `StopIteration` into a `RuntimeError`, and deliver the items computed before an error
    ahead of it. ``resources`` are the sync resources of the chain's source (a generator to
    close), so that ``take`` can stop them the moment it has its items. ``check`` is the last
    stage's sync function, if the chain ends with a ``map``: each of its results is checked for
    a stray awaitable as it leaves the chain.
    """

    __slots__ = ("bare", "check", "held", "it", "resources")

    def __init__(
        self,
        it: Iterator[T_co],
        resources: tuple[Resource, ...] = (),
        check: Callable[..., object] | None = None,
        *,
        bare: Iterator[T_co] | None = None,
    ) -> None:
        self.it = it
        self.resources = resources
        self.check = check
        #: The source's own iterator, when the chain is nothing else: a built-in iterator
        #: (a list's, a range's), which no user code runs in, so that its `StopIteration`
        #: is its end and `take` may read it at C speed. ``it`` is the same iterator,
        #: followed by `ENDED`, for the stages that extend the chain.
        self.bare = bare
        self._budget = SCHEDULE_EVERY
        self.held: BaseException | None = None

    def _raise_held(self) -> None:
        """Raise the error held back by `take` (``held``): its items went first."""
        error, self.held = self.held, None
        if error is not None:
            try:
                raise error
            finally:
                del error

    def take(self, n: int) -> list[T_co]:
        """Up to ``n`` items, without awaiting: fewer when the chain ends (an empty list at its
        end), asks for a schedule point (the budget is then 0), or fails. An error is held
        and raised by the next call, after the items before it were handed over."""
        if self.held is not None:
            self._raise_held()
        items: list[T_co] = []
        bare = self.bare
        if bare is not None:
            try:
                # Appends as it reads: the items read before an error are kept.
                items.extend(islice(bare, n))
            except Exception as exc:  # noqa: BLE001 - a dict changed size, say: after the items
                self.held = exc
            if not items and self.held is not None:
                self._raise_held()
            return items
        append = items.append
        it = self.it
        check = self.check
        try:
            for _ in range(n):
                append(next(it))
        except End:
            pass
        except Yield:
            self._budget = 0
        except (StopIteration, StopAsyncIteration) as exc:
            error = stop_iteration_error(exc)
            error.__cause__ = exc
            self.held = error
        except Exception as exc:  # noqa: BLE001 - raised by the next call, after these items
            self.held = exc
        if check is not None and not PLAIN_TYPES.issuperset(map(type, items)):
            # Some result is of a type not known to be plain: check each (C speed otherwise).
            for i, item in enumerate(items):
                try:
                    check_not_awaitable(item, check, "map")
                except TypeError as exc:
                    # An error at its position: the items before it go first; the later
                    # results (awaitables too, probably) are dropped, and closed.
                    for later in items[i + 1 :]:
                        close_awaitable(later)
                    del items[i:]
                    self.held = exc
                    break
        if not items and self.held is not None:
            self._raise_held()
        return items

    def asked_for_a_schedule_point(self) -> bool:
        """Whether the chain raised `Yield` in the last `take` (that resets the request)."""
        if self._budget > 0:
            return False
        self._budget = SCHEDULE_EVERY
        return True

    def poll(self) -> T_co | NotReady:
        self._budget -= 1
        if self._budget > 0 and self.held is None:
            try:
                item = next(self.it)
            except (End, Yield):
                pass  # pull() ends the stream, or takes the schedule point
            except (StopIteration, StopAsyncIteration) as exc:
                error = stop_iteration_error(exc)
                error.__cause__ = exc
                self.held = error  # raised by pull()
            else:
                if self.check is not None and item.__class__ not in PLAIN_TYPES:
                    check_not_awaitable(item, self.check, "map")
                return item
        self._budget += 1  # not taken: pull() counts it
        return NOT_READY

    async def pull(self) -> T_co:
        while True:
            self._budget -= 1
            if self._budget < 0:
                await self._schedule_point()
            self._raise_held()
            try:
                item = next(self.it)
            except End:
                raise StopAsyncIteration from None
            except Yield:
                self._budget = 0
                continue
            except (StopIteration, StopAsyncIteration) as exc:
                raise stop_iteration_error(exc) from exc
            if self.check is not None and item.__class__ not in PLAIN_TYPES:
                check_not_awaitable(item, self.check, "map")
            return item

    async def pull_some(self) -> Sequence[T_co]:
        return await self.pull_some_of(SCHEDULE_EVERY)

    async def pull_some_of(self, n: int) -> list[T_co]:
        """Up to ``n`` items (at least one), or an empty list at the end; a schedule point
        every `SCHEDULE_EVERY` items."""
        while True:
            if self._budget <= 0:
                await self._schedule_point()  # before taking anything: loses nothing
            items = self.take(min(n, self._budget))
            if items:
                if self._budget > 0:
                    self._budget -= len(items)
                return items
            if self._budget > 0:
                return items  # the end
