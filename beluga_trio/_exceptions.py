"""The exceptions beluga_trio raises itself."""

from __future__ import annotations

__all__ = ["EmptyStreamError", "StreamConsumedError"]


class EmptyStreamError(ValueError):
    """A terminal operation that needs an item (``first``, ``last``, ``invoke``) got none.

    A subclass of `ValueError`, like ``max([])``'s error.
    """


class StreamConsumedError(RuntimeError):
    """A stream over a one-shot source was opened a second time.

    Streams built from an iterator, a generator object, an async generator object or a
    channel can be opened once; a second opening would silently see nothing, so it raises
    this instead. Build the stream from a re-iterable (a list, a range, a ``@stream``
    function) to open it many times.
    """
