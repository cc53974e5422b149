"""The node behind ``merge(*streams)``: every source at once, items in arrival order."""

from __future__ import annotations

import functools
from typing import TypeVar, final

from ._feed import Feed
from ._stage import Node, Pull, Scope
from ._tasks import Tasks
from ._validate import check_count

__all__ = ["MergeNode"]

T = TypeVar("T")


@final
class MergeNode(Node[T]):
    __slots__ = ("_capacity", "_sources")

    def __init__(self, sources: tuple[Node[T], ...], capacity: int) -> None:
        self._sources = sources
        self._capacity = check_count("merge", "capacity", capacity, minimum=1)

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
