"""From chunks to a whole reply (`Aggregator`, `aggregate`) and to events (`to_events`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, final

import trio

from .._events import Event, EventType
from .._sources import stream
from .._stream import Stream
from ..schema import Message, Role, StreamChunk, ToolCall, Usage

__all__ = ["Aggregator", "aggregate", "to_events"]


@final
class _CallBuilder:
    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, delta: ToolCall) -> None:
        self.index = delta.index
        self.id = delta.id
        self.name = delta.name
        self.arguments = [delta.arguments]

    def add(self, delta: ToolCall) -> None:
        self.id = self.id or delta.id
        self.name = self.name or delta.name
        self.arguments.append(delta.arguments)

    def build(self) -> ToolCall:
        return ToolCall(self.index, self.id, self.name, "".join(self.arguments))


@final
class Aggregator:
    """Assembles a model's reply from its chunks, one `add` at a time (synchronous).

    - text (``delta``), reasoning (``reasoning_delta``) and refusal (``refusal``) are each
      concatenated in order;
    - tool calls are assembled from their deltas by ``index``: ``id`` and ``name`` come from
      the first delta that has them, ``arguments`` are joined in order. A delta whose ``id``
      differs from the call already at its index starts a new call (servers that reuse
      index 0 for every call);
    - ``finish_reason`` and ``usage``: the last ones a chunk carried; ``model_id``: the first.

    `message` can be called at any time, e.g. for the partial reply after an error.
    """

    __slots__ = (
        "_calls",
        "_chunks",
        "_finish_reason",
        "_model_id",
        "_reasoning",
        "_refusal",
        "_text",
        "_usage",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, list[_CallBuilder]] = {}
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model_id = ""
        self._chunks = 0

    @property
    def chunks(self) -> int:
        """How many chunks were added."""
        return self._chunks

    def add(self, chunk: StreamChunk) -> None:
        """Take one more chunk into the reply. Raises `TypeError` for a non-chunk."""
        if not isinstance(chunk, StreamChunk):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"Aggregator.add() takes StreamChunk objects, got {chunk!r}")
        self._chunks += 1
        if chunk.delta:
            self._text.append(chunk.delta)
        if chunk.reasoning_delta:
            self._reasoning.append(chunk.reasoning_delta)
        if chunk.refusal:
            self._refusal.append(chunk.refusal)
        for delta in chunk.tool_calls:
            builders = self._calls.get(delta.index)
            if builders is None:
                self._calls[delta.index] = [_CallBuilder(delta)]
                continue
            last = builders[-1]
            if delta.id and last.id and delta.id != last.id:
                builders.append(_CallBuilder(delta))
            else:
                last.add(delta)
        if chunk.finish_reason is not None:
            self._finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage
        if chunk.model_id and not self._model_id:
            self._model_id = chunk.model_id

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls assembled so far, by index (then in order of arrival)."""
        return tuple(b.build() for index in sorted(self._calls) for b in self._calls[index])

    def message(self) -> Message:
        """The reply so far, as an assistant `~beluga_trio.schema.Message`."""
        return Message(
            Role.ASSISTANT,
            "".join(self._text),
            tool_calls=self.tool_calls(),
            reasoning="".join(self._reasoning),
            finish_reason=self._finish_reason,
            usage=self._usage,
            model_id=self._model_id,
            refusal="".join(self._refusal),
        )


async def aggregate(chunks: Stream[StreamChunk]) -> Message:
    """Open ``chunks``, assemble every chunk into one `~beluga_trio.schema.Message` (see
    `Aggregator`) and close it: Go's "Invoke from Stream" for a model reply.

    An empty stream gives an empty assistant message. An error of the stream is raised as
    itself (use `Aggregator` with ``open()`` to keep the partial reply); cancellation passes
    through, and the stream is closed before this returns or raises.
    """
    aggregator = Aggregator()
    await chunks.for_each(aggregator.add)
    return aggregator.message()


def to_events(
    chunks: Stream[StreamChunk],
    *,
    reasoning: bool = False,
    errors: Literal["raise", "event"] = "raise",
) -> Stream[Event[Any]]:
    """The chunks of a model reply as a cold stream of `~beluga_trio.Event`:

    - one ``DATA`` event per chunk with text, its payload the text delta (``str``); with
      ``reasoning=True`` also one per chunk with reasoning, payload the reasoning delta and
      ``meta={"reasoning": True}`` (skipped by default so that printing every ``DATA``
      payload prints the answer only); and one per chunk with a refusal, payload the refusal
      delta and ``meta={"refusal": True}`` (always: a refusal is the model's answer, and an
      empty answer must not hide it);
    - one ``TOOL_CALL`` event per assembled tool call (payload a
      `~beluga_trio.schema.ToolCall`), after the last chunk, in index order;
    - last, a ``DONE`` event whose payload is the whole reply (a
      `~beluga_trio.schema.Message`, as `aggregate` builds it) and whose ``meta`` holds
      ``usage`` (`~beluga_trio.schema.Usage` or ``None``), ``finish_reason``, ``chunks``
      (count), ``time_to_first_chunk`` (seconds from the opening to the first chunk, or
      ``None``), ``chunks_per_second`` (the rate from the first chunk to the last, or ``None``
      for fewer than two chunks) and ``duration`` (seconds from the opening to the end). Times
      come from `trio.current_time`, so they follow a virtual clock in tests.

    Errors: with ``errors="raise"`` (the default) an exception of ``chunks`` ends this stream
    with that very exception. With ``errors="event"`` an `Exception` ends it with an
    ``ERROR`` event instead: ``error`` is the exception, the payload the partial reply, and
    ``meta`` the same timing facts as ``DONE``. Cancellation and other `BaseException`\\ s
    always pass through. Leaving this stream closes ``chunks`` at once.
    """
    if errors not in ("raise", "event"):
        raise ValueError(f'errors must be "raise" or "event", got {errors!r}')
    return _events(chunks, reasoning, errors == "event")


@stream
async def _events(
    chunks: Stream[StreamChunk], reasoning: bool, error_events: bool
) -> AsyncIterator[Event[Any]]:
    aggregator = Aggregator()
    start = trio.current_time()
    first: float | None = None
    last = start

    def timing() -> dict[str, Any]:
        count = aggregator.chunks
        rate = None
        if first is not None and count > 1 and last > first:
            rate = (count - 1) / (last - first)
        return {
            "chunks": count,
            "time_to_first_chunk": None if first is None else first - start,
            "chunks_per_second": rate,
            "duration": trio.current_time() - start,
        }

    try:
        async with chunks.open() as items:
            async for chunk in items:
                last = trio.current_time()
                if first is None:
                    first = last
                aggregator.add(chunk)
                if chunk.delta:
                    yield Event(EventType.DATA, chunk.delta)
                if reasoning and chunk.reasoning_delta:
                    yield Event(EventType.DATA, chunk.reasoning_delta, meta={"reasoning": True})
                if chunk.refusal:
                    yield Event(EventType.DATA, chunk.refusal, meta={"refusal": True})
    except Exception as exc:
        if not error_events:
            raise
        partial = aggregator.message()
        yield Event(EventType.ERROR, partial, error=exc, meta=timing())
        return
    for call in aggregator.tool_calls():
        yield Event(EventType.TOOL_CALL, call)
    reply = aggregator.message()
    meta = {"usage": reply.usage, "finish_reason": reply.finish_reason, **timing()}
    yield Event(EventType.DONE, reply, meta=meta)
