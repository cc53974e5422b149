"""A small, incremental decoder of server-sent events (the WHATWG ``text/event-stream``
format), fed with bytes as they arrive from the network."""

from __future__ import annotations

from typing import Final, final

import attrs

from ._errors import MalformedEventError

__all__ = ["SSEDecoder", "SSEEvent"]

#: The longest line the decoder buffers; a longer one is an error (memory stays bounded).
MAX_LINE: Final = 4 * 1024 * 1024

#: The most data one event may gather (its data lines together); more is an error. A line
#: bound alone does not bound memory: a server may send data lines without ever sending the
#: blank line that ends the event.
MAX_EVENT: Final = 16 * 1024 * 1024


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
    end of the stream (as the specification says). Bytes are decoded as UTF-8 with invalid
    sequences replaced.

    Memory is bounded: a line longer than ``max_line`` bytes, or an event whose data lines
    add up to more than ``max_event`` characters, raises `MalformedEventError`.

    All the complete lines of one `feed` are decoded at once and split with ``str``
    methods: the cost per event is a few string operations, not a regular expression and a
    decode per line.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_event",
        "_id",
        "_max_event",
        "_max_line",
        "_retry",
        "_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, *, max_line: int = MAX_LINE, max_event: int = MAX_EVENT) -> None:
        if max_line < 1 or max_event < 1:
            raise ValueError(
                f"max_line and max_event must be >= 1, got {max_line!r} and {max_event!r}"
            )
        self._max_line = max_line
        self._max_event = max_event
        self._buffer = bytearray()  # the start of a line whose end has not arrived
        self._skip_lf = False  # the last line ended with a CR: a LF right after it is its end
        self._started = False  # the first line was seen (a BOM before it is dropped)
        self._data: list[str] = []
        self._size = 0  # characters in _data
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        """The events completed by ``data``. Raises `MalformedEventError` for a line or an
        event over the bounds."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:  # b"\n"
                data = data[1:]
        buffer = self._buffer
        end = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if end < 0:
            buffer += data
            if len(buffer) > self._max_line:
                self._line_too_long(buffer)
            return []
        if data[end] == 13 and end == len(data) - 1:  # b"\r" at the very end: maybe half CRLF
            self._skip_lf = True
        if buffer:
            block = bytes(buffer) + data[:end]
            buffer.clear()
        else:
            block = data[:end]
        if data[end] == 10 and block.endswith(b"\r"):  # the CR of a CRLF
            block = block[:-1]
        rest = data[end + 1 :]
        if rest:
            buffer += rest
            if len(buffer) > self._max_line:
                self._line_too_long(buffer)
        text = block.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self._lines(text.split("\n"))

    def end(self) -> list[SSEEvent]:
        """The events completed at the end of the stream: a last line without its line
        ending still counts, but an event without its blank line is dropped."""
        events: list[SSEEvent] = []
        if self._buffer:
            text = self._buffer.decode("utf-8", "replace")
            self._buffer.clear()
            events = self._lines([text])
        self._data.clear()
        self._size = 0
        return events

    def _line_too_long(self, buffer: bytearray) -> None:
        text = bytes(buffer[:400]).decode("utf-8", "replace")
        buffer.clear()
        raise MalformedEventError(
            f"a server-sent event line is longer than {self._max_line} bytes", text
        )

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        if not self._started and lines:
            self._started = True
            lines[0] = lines[0].removeprefix("\ufeff")
        for line in lines:
            # The common lines first: "data: ..." and the blank line that ends an event.
            if line[:5] == "data:":
                value = line[6:] if line[5:6] == " " else line[5:]
                self._size += len(value)
                if self._size > self._max_event:
                    self._event_too_big(value)
                data.append(value)
            elif not line:
                if data:
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(SSEEvent(text, self._event or "message", self._id, self._retry))
                    data.clear()
                    self._size = 0
                self._event = ""
            elif line[0] != ":":  # a comment (servers send them as keep-alives) is skipped
                self._field(line)
        return events

    def _event_too_big(self, value: str) -> None:
        start = (self._data[0] if self._data else value)[:400]
        self._data.clear()
        self._size = 0
        raise MalformedEventError(
            f"a server-sent event holds more than {self._max_event} characters of data", start
        )

    def _field(self, line: str) -> None:
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":  # "data" without a colon: an empty data line
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
