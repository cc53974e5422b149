"""A small, incremental decoder of server-sent events (the WHATWG ``text/event-stream``
format), fed with bytes as they arrive from the network."""

from __future__ import annotations

import re
from typing import Final, final

import attrs

from ._errors import MalformedEventError

__all__ = ["SSEDecoder", "SSEEvent"]

#: The longest line the decoder buffers; a longer one is an error (memory stays bounded).
MAX_LINE: Final = 4 * 1024 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")


@attrs.frozen
class SSEEvent:
    """One dispatched event: its ``event`` name (``"message"`` when unnamed), its ``data``
    (the data lines joined by ``"\\n"``), the last ``id`` seen and a ``retry`` in ms, if any."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@final
class SSEDecoder:
    """Turns chunks of a byte stream into `SSEEvent` objects.

    `feed` takes the bytes as they come, split anywhere (even inside a line ending or a UTF-8
    character), and returns the events completed by them; `end` is called once at the end of
    the stream. Lines end with CRLF, LF or CR; ``:`` starts a comment; a blank line dispatches
    the event; an event without data lines is not dispatched, nor is an incomplete one at the
    end of the stream (as the specification says). Bytes are decoded as UTF-8 line by line,
    with invalid sequences replaced.
    """

    __slots__ = ("_buffer", "_data", "_event", "_id", "_retry", "_started")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._started = False  # the first line was seen (a BOM before it is dropped)
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """The events completed by ``data``. Raises `MalformedEventError` for a line longer
        than `MAX_LINE`."""
        buffer = self._buffer
        # The old bytes hold no line ending but maybe a last CR: scan from there only.
        scan_from = max(len(buffer) - 1, 0)
        buffer += data
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer, scan_from):
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # a CR at the very end may be the first half of a CRLF
            self._line(bytes(buffer[start : match.start()]), events)
            start = match.end()
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            text = bytes(buffer[:400]).decode("utf-8", "replace")
            raise MalformedEventError(
                f"a server-sent event line is longer than {MAX_LINE} bytes", text
            )
        return events

    def end(self) -> list[SSEEvent]:
        """The events completed at the end of the stream: a last line without its line
        ending still counts, but an event without its blank line is dropped."""
        events: list[SSEEvent] = []
        if self._buffer:
            line = bytes(self._buffer.rstrip(b"\r"))
            self._buffer.clear()
            self._line(line, events)
        self._data.clear()
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            if self._data:
                events.append(
                    SSEEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
                )
            self._data.clear()
            self._event = ""
            return
        if line.startswith(":"):
            return  # a comment (servers send them as keep-alives)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
