"""The one mechanism by which every stage is opened, stopped and cleaned up.

A `Stream` is a chain of immutable `Node` objects. Opening a stream opens its last node,
which opens its upstream first, and so on down to the source; each node returns a *pull*,
the opened form of the stage, and registers whatever must be stopped later as a `Resource`
of the opening's `Scope`.

There are two kinds of pull:

* `SyncPull` wraps a plain iterator. Synchronous stages (``map``/``filter``/``take``/
  ``skip`` with plain functions) over a synchronous source fuse into one chain of C-level
  iterators (`map`, `filter`, `itertools.chain`) and a few small classes, with no ``await``
  anywhere in it. Such a chain cannot be interrupted half-way through an item, so it needs no
  cancellation logic of its own. Stages that may loop over many source items before producing
  one (filter, skip) raise `_Yield` every `SCHEDULE_EVERY` items so that whoever drives the
  chain can take a schedule point; every iterator in a sync chain keeps its state intact
  when an exception passes through it, so driving it again simply continues.

* `AsyncPull` has ``async def pull()``. Every implementation keeps two promises:

  - **cancel-safe**: if ``pull()`` raises `trio.Cancelled`, no item was lost; the next call
    delivers the item that call would have delivered (a held item, or work that is redone);
  - **never starving**: a loop of ``pull()`` calls passes a schedule point at least every
    `SCHEDULE_EVERY` source items.

  Because of the first promise an operator may wrap ``pull()`` in a cancel scope (a timeout)
  and retry, and a cancelled request never ends a stream early.

The few ``except BaseException`` blocks that do not re-raise (flake8-async's ASYNC102/103)
are exactly the points where an outcome crosses from a task or a cleanup to the consumer;
each says where the exception goes.

Background tasks (producers now; buffers, merges and fan-out later) run in the nursery of
the `Scope`, which the scope enters lazily in the consumer's task when the first stage asks for
it. Tasks never raise into that nursery: a task hands its outcome to its pull (the consumer
raises it) or records it as a cleanup error of its `Resource`. Errors therefore never pass
through a nursery or a cancelled cancel scope, which would wrap them in an exception group or
copy a group the user raised; they arrive as the very same objects.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Generic, TypeVar, final

import trio

__all__ = [
    "NOT_READY",
    "SCHEDULE_EVERY",
    "AsyncPull",
    "Node",
    "NotReady",
    "Pull",
    "Resource",
    "Scope",
    "SyncPull",
    "SyncResource",
    "SyncToAsync",
    "Yield",
    "as_async",
    "replaced_cancellation",
    "settle",
    "stop_and_wait",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: The most source items processed between two schedule points. A full checkpoint costs
#: about 25 times one stage step, so taking one per item would dominate an in-memory
#: pipeline; every 256 items costs ~1-2% and keeps deadlines and other tasks responsive.
SCHEDULE_EVERY: Final = 256


class Yield(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a sync chain to ask its driver for a schedule point.

    Never escapes beluga_trio: every driver of a `SyncPull` catches it, takes a checkpoint
    and drives the chain again. Raising it consumes no item.
    """


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
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by settle()
                self._errors.append(exc)

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        return errors


@final
class Scope:
    """Everything one opening of a stream owns: its resources and, lazily, a nursery.

    Created by ``Stream.open()`` in the consumer's task; `aclose` is called exactly once, in
    the same task, when the consumer leaves (or when opening failed half-way).
    """

    __slots__ = ("_nursery", "_nursery_manager", "_resources")

    def __init__(self, nursery: trio.Nursery | None = None) -> None:
        self._resources: list[Resource] = []
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        # Given for an inner stream opened later within an opening (flat_map, chain): it
        # shares the outer opening's nursery and never enters or exits one itself.
        self._nursery: trio.Nursery | None = nursery

    def add(self, resource: Resource) -> None:
        self._resources.append(resource)

    def mark(self) -> int:
        """A position: resources added after it belong to the stages opened after it."""
        return len(self._resources)

    def since(self, mark: int) -> tuple[Resource, ...]:
        return tuple(self._resources[mark:])

    async def nursery(self) -> trio.Nursery:
        """The nursery for this opening's background tasks, entered on first use."""
        if self._nursery is None:
            manager = trio.open_nursery()
            self._nursery = await manager.__aenter__()
            self._nursery_manager = manager
        return self._nursery

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
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by settle()
                errors.append(exc)
        for resource in resources:
            try:
                await resource.wait_stopped()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by settle()
                # Cancelled included: the rest must still be stopped; settle() lets the
                # body's exception win and re-raises the cancellation if it is still due.
                errors.append(exc)
        if self._nursery_manager is not None:
            # Tasks never raise into this nursery, so this raises nothing of theirs.
            await self._nursery_manager.__aexit__(None, None, None)
            self._nursery_manager = self._nursery = None
        for resource in reversed(resources):
            errors.extend(resource.take_errors())
        return errors


async def stop_and_wait(resources: Sequence[Resource]) -> None:
    """Stop every resource at once, then wait (cancellably) until each has stopped.

    For stages that end their upstream early (``take``, an expired ``timeout``). If the wait
    is cancelled, calling this again waits again: stopping is idempotent.
    """
    for resource in resources:
        resource.stop()
    for resource in resources:
        await resource.wait_stopped()


def replaced_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a `trio.Cancelled` propagated: a ``finally`` or an
    ``except Cancelled`` block that raised, replacing the cancellation. Such an error is a
    cleanup error, reported when the opening closes; any other error is the stream's."""
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if isinstance(context, trio.Cancelled):
            return True
        seen.add(id(context))
        context = context.__context__
    return False


async def settle(exc: BaseException | None, errors: list[BaseException]) -> None:
    """Decide what leaving an opening raises, given the body's exception and cleanup errors.

    * No cleanup error: the body's exception (if any) goes on as itself. Without one, leaving
      is a cancellation point: a cancelled consumer gets its own `trio.Cancelled` (a
      Cancelled seen only during cleanup is not an error).
    * One cleanup error and no body exception: that error, as itself.
    * Otherwise all of them in one `BaseExceptionGroup`, none lost. `KeyboardInterrupt` and
      `SystemExit` are raised as themselves, with the group of the rest as their cause.
    """
    real = [e for e in errors if not isinstance(e, trio.Cancelled)]
    if not real:
        if exc is None:
            # Leaving is a cancellation point, as trio's own async calls are: a cancelled
            # consumer does not walk out of the block as if nothing happened.
            await trio.lowlevel.checkpoint_if_cancelled()
        return
    everything = real if exc is None else [exc, *real]
    for error in everything:
        if isinstance(error, KeyboardInterrupt | SystemExit):
            others = [e for e in everything if e is not error]
            if others:
                raise error from BaseExceptionGroup(
                    "other errors while closing a beluga_trio stream", others
                )
            raise error
    if len(everything) == 1:
        raise everything[0]
    raise BaseExceptionGroup("errors while closing a beluga_trio stream", everything)


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


@final
class SyncPull(Generic[T_co]):
    """An opened synchronous chain: an iterator that never awaits.

    ``resources`` are the sync resources of the chain's source (a generator to close), so
    that ``take`` can stop them the moment it has its items.
    """

    __slots__ = ("it", "resources")

    def __init__(self, it: Iterator[T_co], resources: tuple[Resource, ...] = ()) -> None:
        self.it = it
        self.resources = resources


class AsyncPull(abc.ABC, Generic[T_co]):
    """An opened asynchronous stage. See the module docstring for its two promises."""

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


Pull = SyncPull[T_co] | AsyncPull[T_co]


@final
class SyncToAsync(AsyncPull[T]):
    """Drives a sync chain from async stages, taking a schedule point every few hundred items.

    The only place in an async chain where items from a sync source enter; the
    checkpoint happens before ``next()``, so a `trio.Cancelled` loses nothing.
    """

    __slots__ = ("_budget", "_it")

    def __init__(self, upstream: SyncPull[T]) -> None:
        self._it = upstream.it
        self._budget = SCHEDULE_EVERY

    async def pull(self) -> T:
        while True:
            self._budget -= 1
            if self._budget < 0:
                await trio.lowlevel.checkpoint()
                self._budget = SCHEDULE_EVERY
            try:
                return next(self._it)
            except StopIteration:
                raise StopAsyncIteration from None
            except Yield:
                self._budget = 0


def as_async(pull: Pull[T]) -> AsyncPull[T]:
    """The async form of any pull."""
    return SyncToAsync(pull) if isinstance(pull, SyncPull) else pull
