"""``s.catch(handler)`` and ``s.retry(attempts, backoff=..., on=...)``: going on after an error.

Both run in the consumer's task and only ever look at `Exception`\\ s: `trio.Cancelled`,
`KeyboardInterrupt`, `SystemExit` and groups holding any of them pass through untouched. The
failed upstream is stopped, and has stopped (its ``finally`` blocks have run), before the
stream that replaces it is opened; that stream gets a scope of its own (`._nested`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar, cast, final

import attrs
import trio

from ._nested import Nested, call_for_node, chunked
from ._stage import AsyncPull, Node, Pull, Resource, Scope, stop_and_wait
from ._util import describe
from ._validate import RETURNS_A_STREAM, check_seconds, count, function, to_seconds

__all__ = ["Backoff", "CatchNode", "RetryNode"]

T = TypeVar("T")

Backoff = float | Callable[[int], float]

_NOTHING: Final[Any] = object()


# -------------------------------------------------------------------------------- catch


@final
@attrs.frozen(eq=False)
class CatchNode(Node[T]):
    name: ClassVar[str] = "catch"
    _upstream: Node[T]
    _handler: Callable[[Exception], Any] = attrs.field(validator=function(plain=RETURNS_A_STREAM))

    def describe(self) -> str:
        return f"{self._upstream.describe()} | catch({describe(self._handler)})"

    async def open(self, scope: Scope) -> Pull[T]:
        nested = Nested(await scope.nursery())
        mark = scope.mark()
        upstream = chunked(await self._upstream.open(scope), nested.budget)
        resources = scope.since(mark)
        scope.add(nested)
        return _Catch(upstream, resources, self._handler, nested)


@final
class _Catch(AsyncPull[T]):
    """The upstream's items; after its error, the items of the handler's stream. The handler
    is called once; the stream it returned is held until it is open, so a cancelled request
    never calls it again."""

    __slots__ = ("_handler", "_nested", "_node", "_replacement", "_resources", "_upstream")

    def __init__(
        self,
        upstream: AsyncPull[T],
        resources: tuple[Resource, ...],
        handler: Callable[[Exception], Any],
        nested: Nested,
    ) -> None:
        self._upstream = upstream
        self._resources = resources
        self._handler = handler
        self._nested = nested
        self._node: Node[T] | None = None
        self._replacement: AsyncPull[T] | None = None

    async def pull(self) -> T:
        replacement = self._replacement
        if replacement is None:
            if self._node is None:
                try:
                    return await self._upstream.pull()
                except StopAsyncIteration:
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to the handler
                    self._handle(exc)
            replacement = await self._switch()
        return await replacement.pull()

    async def pull_some(self) -> Sequence[T]:
        replacement = self._replacement
        if replacement is None:
            if self._node is None:
                try:
                    return await self._upstream.pull_some()
                except Exception as exc:  # noqa: BLE001 - handed to the handler
                    self._handle(exc)
            replacement = await self._switch()
        return await replacement.pull_some()

    def _handle(self, exc: Exception) -> None:
        # The handler re-raises, raises another error, or returns the stream to go on with.
        self._node = call_for_node(self._handler, exc, "catch handler")

    async def _switch(self) -> AsyncPull[T]:
        assert self._node is not None
        # The failed upstream stops (its cleanup runs) before the handler's stream opens.
        await stop_and_wait(self._resources)
        _, pull = await self._nested.open(self._node)
        self._node = None
        replacement = self._replacement = chunked(pull, self._nested.budget)
        return replacement


# -------------------------------------------------------------------------------- retry


def _exception_types(on: object) -> tuple[type[Exception], ...]:
    """``on``, one type or a tuple of them, as a tuple, checked."""
    given = cast("tuple[object, ...]", on) if isinstance(on, tuple) else (on,)
    types: list[type[Exception]] = []
    for t in given:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise TypeError(
                "retry() needs on to be an Exception subclass or a tuple of them (never "
                f"Cancelled, KeyboardInterrupt or SystemExit), got {on!r}"
            )
        if issubclass(t, StopAsyncIteration | StopIteration):
            raise TypeError(
                f"retry() needs on to be an error type: it cannot retry the end of a stream "
                f"({t.__name__})"
            )
        types.append(t)
    if not types:
        raise ValueError("retry() needs on to be at least one exception type, got ()")
    return tuple(types)


def _check_backoff(node: RetryNode[Any], field: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        check_seconds(
            node.name, "backoff", value, zero=True, alternative="a function of the retry number"
        )


@final
@attrs.frozen(eq=False)
class RetryNode(Node[T]):
    name: ClassVar[str] = "retry"
    upstream: Node[T]
    attempts: int = attrs.field(validator=count(minimum=1))
    _backoff: Backoff = attrs.field(converter=to_seconds, validator=_check_backoff)
    on: tuple[type[Exception], ...] = attrs.field(converter=_exception_types)

    def describe(self) -> str:
        on = ", ".join(t.__name__ for t in self.on)
        backoff = describe(self._backoff) if callable(self._backoff) else float(self._backoff)
        return f"{self.upstream.describe()} | retry({self.attempts}, backoff={backoff}, on=({on}))"

    async def open(self, scope: Scope) -> Pull[T]:
        nested = Nested(await scope.nursery())
        scope.add(nested)
        # The first attempt opens with the stream (a buffer upstream starts reading now).
        attempt, pull = await nested.open(self.upstream)
        return _Retry(self, nested, attempt, chunked(pull, nested.budget))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        backoff = self._backoff
        if not callable(backoff):
            return float(backoff)
        seconds = cast("object", backoff(retry))  # a user function: check what came back
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not seconds >= 0:
            raise TypeError(
                f"retry() backoff function {describe(backoff)} must return a number of "
                f"seconds >= 0, got {seconds!r} for retry {retry}"
            )
        return float(seconds)


@final
class _Retry(AsyncPull[T]):
    """Re-opens the upstream after a matching error while no item has been delivered.

    State survives a cancelled request: the failed attempt is closed, the time the next one
    may start is fixed when the error arrives (the backoff function is called once per
    retry), and the next request goes on from there.
    """

    __slots__ = (
        "_attempt",
        "_delivered",
        "_errors",
        "_nested",
        "_node",
        "_pull",
        "_resume_at",
        "_scope",
    )

    def __init__(
        self, node: RetryNode[T], nested: Nested, scope: Scope | None, pull: AsyncPull[T]
    ) -> None:
        self._node = node
        self._nested = nested
        self._scope: Scope | None = scope
        self._pull: AsyncPull[T] | None = pull
        self._attempt = 1
        self._delivered = False
        self._resume_at = -math.inf
        self._errors: list[str] = []

    async def _attempt_pull(self) -> AsyncPull[T]:
        """The pull of the attempt running now, after closing the failed one and waiting out
        the backoff if need be."""
        current = self._pull
        if current is None:
            if self._scope is not None:
                # The failed attempt stops (its cleanup runs) before the backoff.
                await self._nested.close(self._scope)
                self._scope = None
            await trio.sleep_until(self._resume_at)
            self._scope, pull = await self._nested.open(self._node.upstream)
            current = self._pull = chunked(pull, self._nested.budget)
        return current

    def _failed(self, exc: Exception) -> None:
        """Raise ``exc`` if it is not to be retried; otherwise schedule the next attempt."""
        node = self._node
        if self._delivered or self._attempt >= node.attempts:
            if self._errors:
                exc.add_note(
                    f"retry(): attempt {self._attempt} of {node.attempts}; the earlier "
                    "attempts failed with " + "; ".join(self._errors)
                )
            raise exc
        self._errors.append(repr(exc))
        self._resume_at = trio.current_time() + node.delay(self._attempt)
        self._attempt += 1
        self._pull = None

    async def pull(self) -> T:
        while True:
            current = await self._attempt_pull()
            try:
                item = await current.pull()
            except StopAsyncIteration:
                raise
            except self._node.on as exc:
                self._failed(exc)
                continue
            self._delivered = True
            return item

    async def pull_some(self) -> Sequence[T]:
        while True:
            current = await self._attempt_pull()
            try:
                items = await current.pull_some()
            except self._node.on as exc:
                self._failed(exc)
                continue
            if items:
                self._delivered = True
            return items
