"""`ScriptedModel`: an offline, deterministic chat model for tests, examples and demos."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, final

import attrs
import trio

from .._sources import stream
from .._stream import Stream
from ..schema import Message, StreamChunk, ToolCall, Usage
from ._aggregate import aggregate
from ._model import Prompt, as_messages

__all__ = ["Fail", "Pause", "ScriptedCall", "ScriptedModel", "Step", "split_words"]


def _check_seconds(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value}")
    return float(value)


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    _check_seconds(attribute.name, value)


@attrs.frozen
class Pause:
    """A script step: wait ``seconds`` (on trio's clock) before the next step."""

    seconds: float = attrs.field(validator=_seconds)


@attrs.frozen
class Fail:
    """A script step: raise ``error`` here, ending the stream. The very object is raised by
    every opening that reaches this step."""

    error: BaseException = attrs.field(validator=attrs.validators.instance_of(BaseException))


Step: TypeAlias = str | StreamChunk | ToolCall | Pause | Fail
"""One step of a script: a text delta (``str``), a whole `StreamChunk`, a tool-call delta
(`ToolCall`, sent as a chunk of its own), a `Pause` or a `Fail`."""

_WORD = re.compile(r"\s*\S+|\s+$")


def split_words(text: str) -> list[str]:
    """``text`` as word pieces that join back to it: ``"Hi there"`` -> ``["Hi", " there"]``."""
    return _WORD.findall(text)


@attrs.define
class ScriptedCall:
    """What happened in one opening of a `ScriptedModel` stream (for tests and demos).

    ``started`` and ``closed_at`` are `trio.current_time` values: when the opening began and
    when its producer's ``finally`` ran (``None`` while it runs). ``chunks`` counts the chunks
    whose production began, final chunk included.
    """

    messages: tuple[Message, ...]
    options: Mapping[str, Any]
    started: float
    chunks: int = 0
    closed_at: float | None = None


@final
class ScriptedModel:
    """An offline chat model that streams a script, deterministically.

    ``script`` is a sequence of `Step`\\ s, or a function of the prompt's messages returning
    one (to answer differently per conversation turn). Each opening of `stream` plays it:

    - before each chunk it sleeps ``first_delay`` (the first chunk; default ``delay``) or
      ``delay`` seconds on trio's clock, so that a virtual clock makes tests instant;
    - a `Pause` sleeps, a `Fail` raises its exception there (after the chunks before it);
    - when the script ends, a final chunk carries the ``finish_reason`` (default ``"stop"``,
      or ``"tool_calls"`` if the script had tool calls) and the ``usage``: ``"auto"`` counts
      the words of the prompt and the chunks sent (a stand-in for tokens), ``None`` sends
      none, or give a `~beluga_trio.schema.Usage`.

    Every chunk carries ``model_id``. Every opening is recorded in `calls` (messages,
    options, timing, chunks started, when its cleanup ran).
    """

    def __init__(
        self,
        script: Iterable[Step] | Callable[[tuple[Message, ...]], Iterable[Step]],
        *,
        delay: float = 0.0,
        first_delay: float | None = None,
        finish_reason: str | None = None,
        usage: Usage | Literal["auto"] | None = "auto",
        model_id: str = "scripted",
    ) -> None:
        if callable(script):
            self._script: Callable[[tuple[Message, ...]], Iterable[Step]] = script
        else:
            steps = tuple(_check_step(step) for step in script)
            self._script = lambda _messages: steps
        self._delay = _check_seconds("delay", delay)
        self._first_delay = (
            self._delay if first_delay is None else _check_seconds("first_delay", first_delay)
        )
        self._finish_reason = finish_reason
        if not (usage is None or usage == "auto" or isinstance(usage, Usage)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f'usage must be a Usage, "auto" or None, got {usage!r}')
        self._usage: Usage | Literal["auto"] | None = usage
        self.model_id = model_id
        #: Every opening of a stream of this model, in order.
        self.calls: list[ScriptedCall] = []

    def __repr__(self) -> str:
        return f"ScriptedModel(model_id={self.model_id!r}, delay={self._delay})"

    def stream(self, prompt: Prompt, /, **options: Any) -> Stream[StreamChunk]:
        """The scripted reply as a cold stream of chunks (see the class docstring).

        Cancellation: the stream stops wherever it is (in a delay or a `Pause`) and its
        cleanup is recorded in `calls`. Errors: a `Fail` step's exception, as itself.
        """
        return _play(self, as_messages(prompt), MappingProxyType(dict(options)))

    async def invoke(self, prompt: Prompt, /, **options: Any) -> Message:
        """The whole scripted reply (`~beluga_trio.llm.aggregate` of `stream`)."""
        return await aggregate(self.stream(prompt, **options))

    def _steps(self, messages: tuple[Message, ...]) -> Iterable[Step]:
        return self._script(messages)

    def _final_chunk(self, messages: tuple[Message, ...], sent: int, tools: bool) -> StreamChunk:
        usage = self._usage
        if isinstance(usage, str):  # "auto"
            prompt_words = sum(len(m.content.split()) for m in messages)
            usage = Usage(prompt_words, sent)
        finish = self._finish_reason or ("tool_calls" if tools else "stop")
        return StreamChunk(finish_reason=finish, usage=usage, model_id=self.model_id)


def _check_step(step: object) -> Step:
    if isinstance(step, str | StreamChunk | ToolCall | Pause | Fail):
        return step
    raise TypeError(f"a script step is a str, StreamChunk, ToolCall, Pause or Fail, got {step!r}")


def _as_chunk(step: str | StreamChunk | ToolCall, model_id: str) -> StreamChunk:
    if isinstance(step, str):
        return StreamChunk(delta=step, model_id=model_id)
    if isinstance(step, ToolCall):
        return StreamChunk(tool_calls=(step,), model_id=model_id)
    return step if step.model_id else attrs.evolve(step, model_id=model_id)


@stream
async def _play(
    model: ScriptedModel, messages: tuple[Message, ...], options: Mapping[str, Any]
) -> AsyncIterator[StreamChunk]:
    call = ScriptedCall(messages, options, trio.current_time())
    model.calls.append(call)
    try:
        sent = 0
        tools = False
        for raw in model._steps(messages):
            step = _check_step(raw)
            if isinstance(step, Pause):
                await trio.sleep(step.seconds)
                continue
            if isinstance(step, Fail):
                raise step.error
            chunk = _as_chunk(step, model.model_id)
            call.chunks += 1
            await trio.sleep(model._first_delay if sent == 0 else model._delay)
            tools = tools or bool(chunk.tool_calls)
            sent += 1
            yield chunk
        call.chunks += 1
        yield model._final_chunk(messages, sent, tools)
    finally:
        call.closed_at = trio.current_time()
