"""`RecordingModel`: a `ChatModel` that records when each of its streams opened and closed,
by the server's own clocks, so a demo (or a test) can show how soon a client's disconnect
stopped the model."""

from __future__ import annotations

import contextvars
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Final, Literal, final

import attrs

from .._sources import stream
from .._stream import Stream
from ..llm._aggregate import aggregate
from ..llm._model import ChatModel, Prompt
from ..schema import Message, StreamChunk
from ._openai import _name_of

__all__ = ["REQUEST_ID", "RecordingModel", "StreamRecord"]

#: The id a stream is recorded under (set per request by the demo from ``X-Request-Id``).
REQUEST_ID: Final = contextvars.ContextVar[str | None]("beluga_trio_web_request_id", default=None)


@attrs.define
class StreamRecord:
    """One opening of a recorded stream. ``*_at`` are `time.time` seconds (comparable with a
    browser's ``Date.now()`` on the same machine), ``*_mono`` `time.monotonic` seconds."""

    id: str
    opened_at: float
    opened_mono: float
    chunks: int = 0
    closed_at: float | None = None
    closed_mono: float | None = None
    outcome: Literal["end", "error", "stopped"] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened_at_ms": self.opened_at * 1000,
            "closed_at_ms": None if self.closed_at is None else self.closed_at * 1000,
            "chunks": self.chunks,
            "outcome": self.outcome,
        }


@final
class RecordingModel:
    """Wraps ``model``; every opening of `stream` is recorded in `records` (the last
    ``keep``), and its record is closed once the wrapped stream's opening has exited, i.e.
    after the wrapped model's cleanup ran (for `~beluga_trio.llm.openai.OpenAIChatModel`,
    after the upstream request was closed)."""

    def __init__(self, model: ChatModel, *, keep: int = 256) -> None:
        self.model = model
        self._keep = keep
        self.records: OrderedDict[str, StreamRecord] = OrderedDict()

    def __repr__(self) -> str:
        return f"RecordingModel({self.model!r})"

    @property
    def model_id(self) -> str:
        """The wrapped model's name (its ``model`` or ``model_id``)."""
        return _name_of(self.model)

    def stream(self, prompt: Prompt, /, **options: Any) -> Stream[StreamChunk]:
        """The wrapped model's stream, recorded under the current `REQUEST_ID`."""
        request_id = REQUEST_ID.get() or uuid.uuid4().hex
        return _recorded(self, self.model.stream(prompt, **options), request_id)

    async def invoke(self, prompt: Prompt, /, **options: Any) -> Message:
        return await aggregate(self.stream(prompt, **options))

    def last(self) -> StreamRecord:
        """The most recent record."""
        return next(reversed(self.records.values()))

    def _add(self, record: StreamRecord) -> None:
        self.records[record.id] = record
        while len(self.records) > self._keep:
            self.records.popitem(last=False)


@stream
async def _recorded(
    model: RecordingModel, inner: Stream[StreamChunk], request_id: str
) -> AsyncIterator[StreamChunk]:
    record = StreamRecord(request_id, time.time(), time.monotonic())
    model._add(record)
    try:
        async with inner.open() as chunks:
            async for chunk in chunks:
                record.chunks += 1
                yield chunk
        record.outcome = "end"
    except Exception:
        record.outcome = "error"
        raise
    finally:
        # The wrapped stream's opening has exited: its producers' cleanup has run.
        record.closed_mono = time.monotonic()
        record.closed_at = time.time()
        if record.outcome is None:
            record.outcome = "stopped"
