"""Opening a stream: the `StreamOpening` context manager and the `StreamIterator` it yields."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

import trio

from ._stage import (
    NOT_READY,
    SCHEDULE_EVERY,
    End,
    Node,
    Pull,
    Scope,
    SyncPull,
    Yield,
    leave,
    stop_and_wait,
    stop_iteration_error,
)
from ._util import PLAIN_TYPES, check_not_awaitable

__all__ = ["StreamIterator", "StreamOpening", "require_trio"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def require_trio(what: str) -> None:
    """Raise a clear error when called outside a trio run (under asyncio, or with no loop)."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            f"{what} must run inside trio: beluga_trio runs under trio (trio.run(main)), "
            "not under asyncio or another event loop"
        ) from None


@final
class StreamOpening(Generic[T_co]):
    """The async context manager returned by `Stream.open`. Enter it once.

    Entering opens every stage (background tasks start in a nursery owned by the block) and
    yields a `StreamIterator`. Leaving, by any route, stops every stage and waits for every
    task; what it raises is decided by one rule, documented in the errors-and-cancellation page.
    """

    __slots__ = ("_iterator", "_node", "_scope")

    def __init__(self, node: Node[T_co]) -> None:
        self._node = node
        self._scope: Scope | None = None
        self._iterator: StreamIterator[T_co] | None = None

    @property
    def scope(self) -> Scope:
        """The opening's scope, once entered (for stages that run the consumer's side too)."""
        assert self._scope is not None, "scope before __aenter__"
        return self._scope

    if not TYPE_CHECKING:

        def __aiter__(self) -> None:
            raise TypeError(
                "stream.open() is an async context manager, not an iterator: use "
                "`async with stream.open() as items: async for x in items: ...`"
            )

    async def __aenter__(self) -> StreamIterator[T_co]:
        require_trio("Stream.open()")
        if self._scope is not None:
            raise RuntimeError(
                "this open() context manager was already entered; call stream.open() again "
                "for another opening"
            )
        scope = self._scope = Scope()
        try:
            pull = await self._node.open(scope)
        except BaseException as exc:
            # Opening failed half-way: stop what was opened, then raise (ASYNC102: leaving
            # the nursery is shielded by trio itself; the tasks stay cancellable).
            await leave(exc, scope)  # noqa: ASYNC102
            raise
        self._iterator = StreamIterator(pull, scope)
        return self._iterator

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._scope is not None, "__aexit__ without __aenter__"
        assert self._iterator is not None
        self._iterator._state = _CLOSED
        # ASYNC102: this is the stream's cleanup; see Scope.aclose for how it stays
        # cancellable without leaving a task behind.
        await leave(exc, self._scope)  # noqa: ASYNC102


class _State(enum.Enum):
    OPEN = "open"
    FINISHED = "finished"  # ended, raised an error, or closed by aclose()
    CLOSED = "closed"  # its opening has exited


# Module constants: looking up an enum member on its class costs several times a global.
_OPEN: Final = _State.OPEN
_FINISHED: Final = _State.FINISHED
_CLOSED: Final = _State.CLOSED


@final
class StreamIterator(AsyncIterator[T_co]):
    """The iterator an opened stream yields. Valid only inside its ``async with`` block.

    After the stream ends or raises, ``anext`` raises `StopAsyncIteration`; after the block
    exits, `trio.ClosedResourceError`; two tasks waiting in ``anext`` at once:
    `trio.BusyResourceError`. Every ``anext`` is a cancellation point, and a cancelled ``anext``
    changes nothing: no item is lost, no user function is called again, the stream goes on.
    """

    __slots__ = ("_budget", "_busy", "_pull", "_scope", "_state", "_sync")

    def __init__(self, pull: Pull[T_co], scope: Scope) -> None:
        self._pull = pull
        self._scope = scope
        self._state = _OPEN
        self._busy = False
        # A sync chain is driven inline here, item by item (a call less per item than
        # SyncPull.poll); its end, its Yield signal and a held error go through SyncPull.
        self._sync: SyncPull[T_co] | None = pull if isinstance(pull, SyncPull) else None
        self._budget = SCHEDULE_EVERY

    @property
    def source(self) -> Pull[T_co]:
        """The opened last stage (for ``fan_out``, which reads it from a task of its own)."""
        return self._pull

    def _refuse(self) -> None:
        if self._state is _CLOSED:
            raise trio.ClosedResourceError("this stream's open() block has exited")
        if self._busy:
            raise trio.BusyResourceError("another task is already waiting on this stream")

    async def __anext__(self) -> T_co:
        if self._state is not _OPEN or self._busy:
            if self._state is _FINISHED and not self._busy:
                await trio.lowlevel.checkpoint()
                raise StopAsyncIteration
            self._refuse()
        await trio.lowlevel.checkpoint_if_cancelled()
        self._busy = True
        try:
            sync = self._sync
            if sync is not None and sync.held is None:
                self._budget -= 1
                if self._budget <= 0:
                    self._budget = SCHEDULE_EVERY
                    await trio.lowlevel.checkpoint()
                try:
                    item = next(sync.it)
                except (End, Yield):
                    item = await sync.pull()  # the end (End repeats), or a schedule point
                except (StopIteration, StopAsyncIteration) as exc:
                    raise stop_iteration_error(exc) from exc
                else:
                    check = sync.check
                    if check is not None and item.__class__ not in PLAIN_TYPES:
                        check_not_awaitable(item, check, "map")
            else:
                pull = self._pull
                ready = pull.poll()  # a ready item without a coroutine, if the stage has one
                item = await pull.pull() if ready is NOT_READY else ready
        except StopAsyncIteration:
            self._state = _FINISHED
            raise
        except trio.Cancelled:
            raise  # every stage is cancel-safe: the stream goes on
        except BaseException:
            self._state = _FINISHED
            raise
        else:
            return item
        finally:
            self._busy = False

    async def aclose(self) -> None:
        """Stop the stream now, as leaving the block would, and wait until every stage has
        stopped; later ``anext`` calls raise `StopAsyncIteration`. Errors raised while the
        stages clean up are raised when the block exits. Cancellable: the block's exit
        finishes the job."""
        if self._state is _CLOSED:
            return
        self._state = _FINISHED
        await stop_and_wait(self._scope.resources[::-1])

    async def _drain(self, sink: Callable[[Sequence[T_co]], object]) -> None:
        """Feed every remaining item to ``sink`` in order, as many as are ready per call.

        For terminal operations: a sync chain hands over chunks at C speed, with a schedule
        point between chunks; a buffer whatever it holds. If this is cancelled, nothing is
        lost and the iterator goes on.
        """
        self._refuse()
        if self._state is not _OPEN:
            return
        self._busy = True
        try:
            pull_some = self._pull.pull_some
            while items := await pull_some():
                sink(items)
        except trio.Cancelled:
            raise
        except BaseException:
            self._state = _FINISHED
            raise
        else:
            self._state = _FINISHED
        finally:
            self._busy = False
