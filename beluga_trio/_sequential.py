"""The base of every sequential operator: one upstream, and the sync/async dispatch, once.

`Sequential.open` opens the upstream, then hands a synchronous chain to the operator's `fuse`
(which extends the chain with C-level iterators and no ``await``, or returns ``None`` when the
operator cannot run fused) and anything else to its `wrap` (an `AsyncPull` keeping the two
promises of `._stage`). An operator supplies those two forms and nothing else; its module reads
top to bottom with every exit path in view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs

from ._stage import AsyncPull, Node, Pull, Resource, Scope, SyncPull
from ._util import describe, is_async_callable
from ._validate import function

__all__ = ["FunctionStage", "Sequential"]

U = TypeVar("U")


@attrs.frozen(eq=False)
class Sequential(Node[U]):
    """A node with one upstream, opened by one template (see the module docstring)."""

    #: The operator's name, for its part of the stream's repr and its error messages.
    name: ClassVar[str]
    _upstream: Node[Any]

    def describe(self) -> str:
        return f"{self._upstream.describe()} | {self.describe_self()}"

    def describe_self(self) -> str:
        return f"{self.name}()"

    async def open(self, scope: Scope) -> Pull[U]:
        mark = scope.mark()
        upstream = await self._upstream.open(scope)
        if isinstance(upstream, SyncPull):
            fused = self.fuse(upstream)
            if fused is not None:
                return fused
        return await self.wrap(upstream, scope, scope.since(mark))

    def fuse(self, upstream: SyncPull[Any]) -> SyncPull[U] | None:
        """The chain extended by this stage, or ``None`` if the stage cannot run fused."""
        return None

    async def wrap(
        self, upstream: AsyncPull[Any], scope: Scope, upstream_resources: tuple[Resource, ...]
    ) -> Pull[U]:
        """The stage over any upstream. ``upstream_resources`` are what the upstream stages
        registered, for stages that stop their upstream early."""
        raise NotImplementedError


@attrs.frozen(eq=False)
class FunctionStage(Sequential[U]):
    """A stage that applies a user function, sync or ``async def`` (decided once, here)."""

    _fn: Callable[..., Any] = attrs.field(validator=function())

    def _calls_are_async(self) -> bool:
        return is_async_callable(self._fn)

    _is_async: bool = attrs.field(
        init=False, default=attrs.Factory(_calls_are_async, takes_self=True)
    )

    def describe_self(self) -> str:
        return f"{self.name}({describe(self._fn)})"
