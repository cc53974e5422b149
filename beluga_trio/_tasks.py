"""`Tasks`: the supervised background tasks of one stage (a buffer's pump, a merge's source
readers, a concurrent map's workers).

Each task runs in the opening's nursery under a cancel scope the stage owns. What a task raises
is classified by `._outcome`: the stream's error is recorded, stops the stage's other tasks and
its upstream (the first error ends the stage), and is raised *to the consumer*, by the stage's
pull, after the items that arrived before it; a `KeyboardInterrupt`/`SystemExit` goes on into
the nursery, which ends the whole opening at once; a cancellation from outside is remembered,
so that the stage's end is not taken for a clean one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import final

import trio

from ._outcome import Kind, classify, find_fatal, raise_fatal
from ._stage import Resource

__all__ = ["Tasks", "raise_errors"]


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
    raised, in order, for the consumer's pull to raise when it reaches the end of the
    channel; `stop` cancels them all, and `trio.Cancelled` is never recorded: a cancelled
    consumer raises its own.
    """

    __slots__ = (
        "_all_done",
        "_also_stop",
        "_cancelled",
        "_cleanup_errors",
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
        self._cleanup_errors: list[BaseException] = []

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
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - classified, see ._outcome
            # A stage task moves items of pulls (whose own stages have already classified what
            # they raise) or calls sync functions (which cannot see a cancellation): what it
            # raises is the stream's content, delivered at its position.
            kind = classify(exc, stopping=False)
            if kind is Kind.FATAL:
                raise_fatal(exc)  # into the opening's nursery: it ends the opening at once
            if kind is Kind.CANCELLED:
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

    def fail_or_interrupt(self, exc: BaseException) -> None:
        """What a stage task caught from the work it runs: a `KeyboardInterrupt` or
        `SystemExit` (alone, or in a group) is raised into the opening's nursery, never held
        like the stream's error (a consumer that left first would drop it); anything else
        fails the stage (`fail`)."""
        if find_fatal(exc) is not None:
            raise_fatal(exc)
        self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Record an error and stop every task of the stage, and the stages it reads: the
        first error ends the stage."""
        self.errors.append(exc)
        self.stop()
        for resource in self._also_stop:
            resource.stop()

    def stop(self) -> None:
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    async def wait_stopped(self) -> None:
        if self._running:
            await self._all_done.wait()

    def unread_errors(self) -> list[BaseException]:
        return list(self.errors)

    def take_errors(self) -> list[BaseException]:
        # What the tasks raised is the stream's content, raised by the consumer's pull after
        # the items before it; a consumer that left before reaching it drops it with those
        # items. Errors raised while the tasks were being cancelled are cleanup errors.
        errors, self._cleanup_errors = self._cleanup_errors, []
        return errors
