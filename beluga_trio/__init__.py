"""Streaming primitives for trio: cold, typed streams whose tasks live in the consumer's block.

A `Stream` describes work and runs nothing until it is opened. It runs only inside an
``async with stream.open() as items:`` block, or inside a terminal operation (``await
stream.collect()``, ``first()``, ``last()``, ``reduce()``, ``for_each()``), which owns every
task the stream needs; leaving the block by any route (end, ``break``, an error, a
cancellation) stops every stage and runs every producer's ``finally`` before the next line::

    import trio
    import beluga_trio as bt

    @bt.stream
    async def tokens(n):
        for i in range(n):
            await trio.sleep(0.01)
            yield f"tok{i}"

    async def main():
        upper = tokens(5).map(str.upper).filter(lambda t: t != "TOK3")
        print(await upper.collect())  # ['TOK0', 'TOK1', 'TOK2', 'TOK4']
        async with upper.open() as items:
            async for t in items:
                break  # the producer has stopped when the block exits

    trio.run(main)

Sources: `stream` (a decorator for async generator functions; the body runs lock-step in a
task of its own and may hold cancel scopes and nurseries across ``yield``), `from_iterable`,
`from_channel`. Operators return new streams: ``map`` (optionally concurrent), ``filter``,
``take``, ``skip``, ``batch``, ``timeout``, ``buffer``; `merge` and `pipe`. `fan_out` runs
several consumers over one reading of a stream; `BufferedStream` reads ahead into a bounded
buffer. `collect_result` keeps the items received before an error together with the error.

The guarantees: an error arrives as itself, not wrapped in an exception group; a cancelled
stream never looks finished; an ``anext`` cancelled by a timeout loses no item; every item is
a cancellation point; no stage buffers without bound; user functions run once per item.

Subpackages: `beluga_trio.llm` (chat models as streams of chunks and events, an offline
`~beluga_trio.llm.ScriptedModel`; the OpenAI-compatible ``beluga_trio.llm.openai`` needs
``pip install beluga_trio[http]``), `beluga_trio.schema` (chunks, tool calls, usage,
messages) and `beluga_trio.testing` (`~beluga_trio.testing.cancel_sweep` and leak checks, to
prove your own pipelines correct under cancellation). ``python -m beluga_trio`` runs a demo.
"""

from ._buffer import BufferedStream, BufferStatistics, Overflow
from ._events import Event, EventType
from ._exceptions import EmptyStreamError, StreamConsumedError
from ._fanout import fan_out
from ._opening import StreamIterator, StreamOpening
from ._share import LaggedError, MissedItemsError, ReplayGapError, Shared, ShareOverflow, share
from ._sources import from_channel, from_iterable, stream
from ._stream import (
    MAX_DEPTH,
    CollectResult,
    Stream,
    collect,
    collect_result,
    invoke,
    merge,
    pipe,
)

# The one place the version is written: the package metadata reads it from here (hatch).
__version__ = "0.1.0.dev0"

__all__ = [
    "MAX_DEPTH",
    "BufferStatistics",
    "BufferedStream",
    "CollectResult",
    "EmptyStreamError",
    "Event",
    "EventType",
    "LaggedError",
    "MissedItemsError",
    "Overflow",
    "ReplayGapError",
    "ShareOverflow",
    "Shared",
    "Stream",
    "StreamConsumedError",
    "StreamIterator",
    "StreamOpening",
    "collect",
    "collect_result",
    "fan_out",
    "from_channel",
    "from_iterable",
    "invoke",
    "merge",
    "pipe",
    "share",
    "stream",
]


def _fix_module_names() -> None:
    # Public objects say they live in the package, not in its private modules (as trio does).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("beluga_trio._"):
            obj.__module__ = __name__


_fix_module_names()
