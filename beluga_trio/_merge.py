"""The node behind ``merge(*streams)``: every source at once, items in arrival order."""

from __future__ import annotations

import functools
from typing import TypeVar, final

import trio

from ._channel import ChannelPull, Tasks, pump
from ._stage import Node, Pull, Scope, as_async

__all__ = ["MergeNode"]

T = TypeVar("T")


@final
class MergeNode(Node[T]):
    __slots__ = ("_capacity", "_sources")

    def __init__(self, sources: tuple[Node[T], ...], capacity: int) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"merge() needs an int capacity, got {capacity!r}")
        if capacity < 0:
            raise ValueError(f"merge() needs a capacity >= 0, got {capacity}")
        self._sources = sources
        self._capacity = capacity

    def describe(self) -> str:
        return "merge(" + ", ".join(s.describe() for s in self._sources) + ")"

    async def open(self, scope: Scope) -> Pull[T]:
        mark = scope.mark()
        pulls = [as_async(await source.open(scope)) for source in self._sources]
        tx, rx = trio.open_memory_channel[T](self._capacity)
        # The first error stops the other readers and every source stage at once.
        tasks = Tasks(also_stop=scope.since(mark))
        scope.add(tasks)
        if not pulls:
            tx.close()
            return ChannelPull(rx, tasks)
        tasks.when_all_done(tx.close)
        nursery = await scope.nursery()
        for i, pull in enumerate(pulls):
            tasks.start(nursery, functools.partial(pump, pull, tx), name=f"merge source {i}")
        return ChannelPull(rx, tasks)
