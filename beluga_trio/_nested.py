"""Inner streams: streams opened in the middle of another stream's opening.

``chain`` opens each source when the one before it has ended, ``flat_map`` and
``switch_map`` open a stream per item, ``catch`` opens the handler's stream and ``retry``
re-opens its upstream. Each such opening gets a `Scope` of its own, so that its resources are
stopped (and its producers' ``finally`` blocks have run) as soon as it ends, and memory does not
grow with the number of inner streams; it shares the outer opening's nursery, entered in the
consumer's task when the outer stage was opened, so that opening an inner stream in the middle
of a ``pull()`` never enters a nursery or a cancel scope there (trio #264, #638).

`Nested` is the one `Resource` a stage registers for all its inner streams: leaving the outer
opening stops those still open, and the errors raised while any of them cleaned up are
reported then, as the outer opening reports its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast, final

import trio

from ._stage import (
    SCHEDULE_EVERY,
    AsyncPull,
    Node,
    Pull,
    Resource,
    Scope,
    SyncPull,
    is_node,
    stop_iteration_error,
)
from ._util import check_not_awaitable, describe

__all__ = ["Budget", "Chunks", "Nested", "call_for_node", "chunked", "node_of", "stream_node"]

T = TypeVar("T")


def stream_node(value: object, what: str) -> Node[Any]:
    """The node of a `Stream` argument; `TypeError` naming ``what`` for anything else."""
    node = getattr(value, "_node", None)
    if not is_node(node):
        raise TypeError(f"{what} needs a beluga_trio Stream, got {value!r}")
    return node  # pyright: ignore[reportUnknownVariableType]


def call_for_node(fn: Callable[[Any], object], arg: object, role: str) -> Node[Any]:
    """``fn(arg)``, a user function that returns a `Stream` (``flat_map``'s ``fn``, ``catch``'s
    handler), and the node of that stream. A `StopIteration`/`StopAsyncIteration` it raises
    becomes a `RuntimeError` (PEP 479): raised inside a pull, it would end the stream."""
    try:
        result = fn(arg)
    except (StopIteration, StopAsyncIteration) as exc:
        raise stop_iteration_error(exc, f"the {role} function {describe(fn)}") from exc
    return node_of(result, fn, role)


def node_of(result: object, fn: object, role: str) -> Node[Any]:
    """The node of the `Stream` a user function returned (``flat_map``'s ``fn``, ``catch``'s
    handler); a clear `TypeError` for anything else."""
    node = getattr(result, "_node", None)
    if is_node(node):
        return node  # pyright: ignore[reportUnknownVariableType]
    check_not_awaitable(result, fn, role)
    raise TypeError(
        f"the {role} function {describe(fn)} must return a beluga_trio Stream, "
        f"got {type(result).__name__}: {result!r}"
    )


@final
class Nested(Resource):
    """The inner streams of one stage, each opened in a `Scope` of its own.

    `open` opens a node; `close` stops that opening and waits until it has stopped. Both may
    be called from the consumer's task or from a task of the stage. A `close` that is
    cancelled can be called again; an opening never closed (the consumer left, a task was
    cancelled) is stopped with the outer opening.
    """

    __slots__ = ("_errors", "_nursery", "_open", "_spare", "_stopped", "_stopping", "budget")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.budget = Budget()  # for the stage's `chunked` pulls
        self._open: dict[Scope, None] = {}  # insertion-ordered set
        self._stopped: list[Scope] = []  # failed openings, closed before the next one
        self._errors: list[BaseException] = []
        self._stopping = False  # the outer opening stopped this stage
        self._spare: Scope | None = None

    async def open(self, node: Node[T]) -> tuple[Scope | None, Pull[T]]:
        """Open ``node`` in a scope of its own; that scope, or None if the opening holds
        nothing to stop (a sync source with nothing to close), so that a caller can skip
        `close`."""
        if self._stopped:
            await self.close_failed()
        scope = self._spare
        if scope is None:
            scope = Scope(self._nursery)
        else:
            self._spare = None
        self._open[scope] = None
        try:
            pull = await node.open(scope)
        except BaseException:
            # Stop what was opened; it is waited for by the next open() or by the outer close.
            self._stop_scope(scope)
            self._stopped.append(scope)
            raise
        if not scope.mark():
            del self._open[scope]
            self._spare = scope  # still empty: the next opening may use it
            return None, pull
        if self._stopping:
            # The outer opening stopped the stage while this opening was being made: what it
            # started after that (a producer task) was not stopped with the rest, and the
            # outer close waits for it.
            self._stop_scope(scope)
        return scope, pull

    async def close_failed(self) -> None:
        """Wait until the openings that failed (a cancelled `open` included) have stopped."""
        while self._stopped:
            await self.close(self._stopped[-1])

    async def close(self, scope: Scope | None) -> None:
        """Stop an opening and wait until every part of it has stopped. Errors raised while it
        cleaned up are reported when the outer opening closes."""
        if scope is None or scope not in self._open:
            return
        resources = scope.since(0)[::-1]
        self._stop_scope(scope)
        for resource in resources:
            await resource.wait_stopped()
        del self._open[scope]
        if scope in self._stopped:
            self._stopped.remove(scope)
        for resource in reversed(resources):
            self._errors.extend(resource.take_errors())

    def _stop_scope(self, scope: Scope) -> None:
        for resource in scope.since(0)[::-1]:
            try:
                resource.stop()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - reported by take_errors
                self._errors.append(exc)

    # The outer opening's side.

    def stop(self) -> None:
        self._stopping = True
        for scope in reversed(self._open):
            self._stop_scope(scope)

    async def wait_stopped(self) -> None:
        for scope in list(self._open):
            for resource in scope.since(0)[::-1]:
                await resource.wait_stopped()

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        for scope in self._open:
            for resource in reversed(scope.since(0)):
                errors.extend(resource.take_errors())
        return errors


@final
class Budget:
    """Items a stage may still hand on before its next schedule point, shared by the `Chunks`
    of all its inner streams (a stage that flattens many short streams still takes one every
    `SCHEDULE_EVERY` items, not one per stream)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = SCHEDULE_EVERY


@final
class Chunks(AsyncPull[T]):
    """A sync chain driven from an async stage that hands it on in chunks.

    ``pull`` is the chain's own (`SyncPull.pull`); ``pull_some`` takes up to the items left in
    the stage's `Budget` at C speed (`SyncPull.take`), and a schedule point first when the
    budget is spent (before taking anything, so a `trio.Cancelled` loses nothing). Items taken
    before an error are delivered first; the error comes with the next call. For stages that
    pass whole chunks on (``chain``, ``flat_map``, ``catch``, ``retry``), so that a terminal
    operation drains a sync source through them at the speed of the source.
    """

    __slots__ = ("_budget", "_upstream", "ended")

    def __init__(self, upstream: SyncPull[T], budget: Budget) -> None:
        self._upstream = upstream
        self._budget = budget
        #: The chain is exhausted: the next `pull_some` returns ``()`` (stages move on at once).
        self.ended = False

    async def pull(self) -> T:
        return await self._upstream.pull()

    async def pull_some(self) -> Sequence[T]:
        if self.ended:
            return ()
        budget = self._budget
        upstream = self._upstream
        while True:
            if budget.left <= 0:
                await trio.lowlevel.checkpoint()
                budget.left = SCHEDULE_EVERY
            asked = budget.left
            items = upstream.take(asked)
            if upstream.asked_for_a_schedule_point():
                budget.left = 0
                if not items:
                    continue
            elif len(items) < asked and upstream.held is None:
                # Fewer than asked, with no schedule point asked for and no error held: the
                # chain ended, so the stage moves on without asking it again.
                self.ended = True
                if not items:
                    return items
            budget.left -= len(items)
            return items


def chunked(pull: Pull[T], budget: Budget) -> AsyncPull[T]:
    """The async form of any pull; a sync chain becomes `Chunks` drawing on ``budget``."""
    if type(pull) is SyncPull:  # a final class: no ABC check needed
        return Chunks(cast("SyncPull[T]", pull), budget)
    return pull
