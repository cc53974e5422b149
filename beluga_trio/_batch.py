"""``s.batch(size, *, within=None)``: lists of up to ``size`` items.

With ``within`` seconds, a partial batch is delivered when that time has passed since its first
item. A partial batch is kept across a cancelled request, and one cut short by an upstream error
is delivered before the error is raised. The upstream's pulls are cancel-safe and run no user
code in this task (an async ``map`` runs in its own task), so the ``within`` deadline cancelling
a pull never repeats a call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar, final

import attrs
import trio

from ._sequential import Sequential
from ._stage import AsyncPull, End, Pull, Resource, Scope, SyncPull, Yield
from ._util import PLAIN_TYPES, check_not_awaitable, close_awaitable
from ._validate import count, seconds, to_seconds

__all__ = ["BatchNode"]

T = TypeVar("T")


@final
@attrs.frozen(eq=False)
class BatchNode(Sequential[list[T]]):
    name: ClassVar[str] = "batch"
    _size: int = attrs.field(validator=count(minimum=1))
    _within: float | None = attrs.field(converter=to_seconds, validator=seconds(optional=True))

    def describe_self(self) -> str:
        return f"batch({self._size}, within={self._within})"

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[list[T]] | None:
        if self._within is not None:
            return None  # a time limit needs the async form
        return SyncPull(_SyncBatch(upstream.it, self._size, upstream.check), upstream.resources)

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[list[T]]:
        return _Batch(upstream, self._size, self._within)


@final
class _SyncBatch(Iterator[list[T]]):
    """Lists of up to ``size`` items. A partial batch survives `Yield` (it is kept in
    ``_partial``); one ended by an upstream error is delivered before the error. ``check`` is
    the chain's last sync ``map`` function, if any: the chain's driver checks only what leaves
    the chain (a batch), so the map's results are checked here, a whole batch at C speed."""

    __slots__ = ("_check", "_error", "_it", "_partial", "_size")

    def __init__(self, it: Iterator[T], size: int, check: Callable[..., object] | None) -> None:
        self._it = it
        self._size = size
        self._check = check
        self._partial: list[T] = []
        self._error: Exception | None = None

    def __next__(self) -> list[T]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch = self._partial
        try:
            while len(batch) < self._size:
                batch.append(next(self._it))
        except End:
            if not batch:
                raise
        except Yield:
            raise
        except Exception as exc:
            if not batch:
                raise
            self._error = exc
        self._partial = []
        if self._check is not None and not PLAIN_TYPES.issuperset(map(type, batch)):
            self._check_items(batch)
        return batch

    def _check_items(self, batch: list[T]) -> None:
        """Check a map's results for a stray awaitable. The `TypeError` is a position: the
        items before it go first, in a shorter batch; the later ones are dropped (closed)."""
        for i, item in enumerate(batch):
            try:
                check_not_awaitable(item, self._check, "map")
            except TypeError as exc:
                for later in batch[i + 1 :]:
                    close_awaitable(later)
                del batch[i:]
                if not batch:
                    raise
                self._error = exc  # before any upstream error held: that one is never reached
                return


@final
class _Batch(AsyncPull[list[T]]):
    """Lists of up to ``size`` items; with ``within``, a partial batch is flushed ``within``
    seconds after its first item arrived. The partial batch is kept across a cancelled pull,
    and one ended by an upstream error is delivered before the error."""

    __slots__ = ("_deadline", "_error", "_partial", "_size", "_upstream", "_within")

    def __init__(self, upstream: AsyncPull[T], size: int, within: float | None) -> None:
        self._upstream = upstream
        self._size = size
        self._within = within
        self._partial: list[T] = []
        self._deadline = math.inf
        self._error: Exception | None = None

    async def pull(self) -> list[T]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        batch = self._partial
        within = self._within
        try:
            while len(batch) < self._size:
                if batch and within is not None:
                    with trio.move_on_at(self._deadline):
                        batch.append(await self._upstream.pull())
                        continue
                    break  # the deadline passed: the partial batch is due
                batch.append(await self._upstream.pull())
                if within is not None:
                    self._deadline = trio.current_time() + within
        except StopAsyncIteration:
            if not batch:
                raise
        except trio.Cancelled:
            raise  # the partial batch stays in _partial for the next pull
        except Exception as exc:
            if not batch:
                raise
            self._error = exc
        self._partial = []
        return batch
