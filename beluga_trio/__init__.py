"""Streaming primitives for trio.

A `Stream` is cold, immutable and typed; it runs only while it is open, inside an
``async with`` block (or a terminal operation) that owns every task it needs, so leaving the
block stops everything. See ``docs/`` for the concepts and the guarantees.
"""

from ._buffer import BufferedStream, BufferStatistics, Overflow
from ._events import Event, EventType
from ._exceptions import EmptyStreamError, StreamConsumedError
from ._fanout import fan_out
from ._opening import StreamIterator, StreamOpening
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

__all__ = [
    "MAX_DEPTH",
    "BufferStatistics",
    "BufferedStream",
    "CollectResult",
    "EmptyStreamError",
    "Event",
    "EventType",
    "Overflow",
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
    "stream",
]


def _fix_module_names() -> None:
    # Public objects say they live in the package, not in its private modules (as trio does).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("beluga_trio._"):
            obj.__module__ = __name__


_fix_module_names()
