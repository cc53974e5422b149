"""The node behind ``merge(*streams)``: every source at once, items in arrival order."""

from __future__ import annotations

import functools
from typing import ClassVar, TypeVar, final

import attrs

from ._feed import Feed
from ._stage import Node, Pull, Scope
from ._tasks import Tasks
from ._validate import count

__all__ = ["MergeNode"]

T = TypeVar("T")


@final
@attrs.frozen(eq=False)
class MergeNode(Node[T]):
    name: ClassVar[str] = "merge"
    _sources: tuple[Node[T], ...]
    _capacity: int = attrs.field(validator=count(minimum=1))

    def describe(self) -> str:
        return "merge(" + ", ".join(s.describe() for s in self._sources) + ")"

    async def open(self, scope: Scope) -> Pull[T]:
        mark = scope.mark()
        pulls = [await source.open(scope) for source in self._sources]
        # The first error stops the other readers and every source stage at once.
        tasks = Tasks(also_stop=scope.since(mark))
        feed: Feed[T] = Feed(self._capacity, "wait", tasks)
        scope.add(tasks)
        if not pulls:
            feed.close()
            return feed.output
        tasks.when_all_done(feed.close)
        nursery = await scope.nursery()
        for i, pull in enumerate(pulls):
            tasks.start(nursery, functools.partial(feed.pump, pull), name=f"merge source {i}")
        return feed.output
