"""The data a chat model streams and returns: the Python form of Beluga's ``schema`` package.

Every class is a frozen attrs class with defaults and tuples instead of lists, so values are
immutable, compare by value and can be shared between tasks freely.

- `StreamChunk`: one piece of a streamed reply (a text delta, tool-call deltas, the finish
  reason, the usage).
- `ToolCall`: a tool call, whole or as one delta of a streamed one.
- `Usage`: token counts.
- `Message`: one message of a conversation, or the whole reply of a model.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["Message", "Role", "StreamChunk", "ToolCall", "Usage"]


class Role(enum.StrEnum):
    """Who wrote a `Message`. A `str` enum: ``Role.USER == "user"``."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(repr(r.value) for r in Role)
        raise ValueError(f"unknown role {value!r}; expected one of {valid}") from None


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{attribute.name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class ToolCall:
    """A call of a tool (a function) requested by the model.

    In a `StreamChunk` it is a *delta*: the first delta of a call usually carries its ``id``
    and ``name`` and the start of ``arguments``, later ones only more of ``arguments``; the
    deltas of one call share its ``index``. In a `Message` it is the whole call, assembled.
    ``arguments`` is the JSON text the model produced (possibly invalid JSON: models err).
    """

    index: int = attrs.field(default=0, validator=_non_negative)
    id: str = ""
    name: str = ""
    arguments: str = ""

    def parsed_arguments(self) -> Any:
        """``arguments`` decoded as JSON (``{}`` when empty).

        Raises `json.JSONDecodeError` (a `ValueError`) when the model produced invalid JSON.
        """
        return json.loads(self.arguments) if self.arguments.strip() else {}


def _total(usage: Usage) -> int:
    return usage.prompt_tokens + usage.completion_tokens


@attrs.frozen
class Usage:
    """Token counts of one model call. ``total_tokens`` defaults to the sum of the prompt and
    completion tokens.

    ``cached_tokens`` is the part of ``prompt_tokens`` the provider read from its prompt
    cache (OpenAI's ``prompt_tokens_details.cached_tokens``; billed cheaper), and
    ``reasoning_tokens`` the part of ``completion_tokens`` the model spent thinking
    (``completion_tokens_details.reasoning_tokens``); both 0 when the provider does not say.
    """

    prompt_tokens: int = attrs.field(default=0, validator=_non_negative)
    completion_tokens: int = attrs.field(default=0, validator=_non_negative)
    total_tokens: int = attrs.field(
        default=attrs.Factory(_total, takes_self=True), validator=_non_negative
    )
    cached_tokens: int = attrs.field(default=0, validator=_non_negative)
    reasoning_tokens: int = attrs.field(default=0, validator=_non_negative)

    def __add__(self, other: Usage) -> Usage:
        """The usage of two calls together."""
        if not isinstance(other, Usage):  # pyright: ignore[reportUnnecessaryIsInstance]
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


def _tool_calls(value: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    if value == ():
        return ()  # the common case, taken without a loop (a chunk of text has no calls)
    calls = tuple(value)
    for call in calls:
        if not isinstance(call, ToolCall):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"tool_calls holds ToolCall objects, got {call!r}")
    return calls


@attrs.frozen
class StreamChunk:
    """One piece of a streamed model reply.

    - ``delta``: more text of the reply;
    - ``tool_calls``: tool-call deltas (see `ToolCall`), joined by index into whole calls;
    - ``finish_reason``: why the model stopped (``"stop"``, ``"length"``, ``"tool_calls"``...),
      on the last chunk that has one;
    - ``usage``: the token counts, usually on the last chunk;
    - ``reasoning_delta``: more of the model's reasoning text, for models that expose it;
    - ``model_id``: the model that produced it, when the server says;
    - ``refusal``: more of the model's refusal to answer (OpenAI's ``delta.refusal``), which
      comes instead of text: a reply may be a refusal and have no text at all.
    """

    delta: str = ""
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_calls)
    finish_reason: str | None = None
    usage: Usage | None = None
    reasoning_delta: str = ""
    model_id: str = ""
    refusal: str = ""


@attrs.frozen
class Message:
    """One message of a conversation, or a model's whole reply.

    ``role`` is a `Role` (a plain string such as ``"user"`` is converted). A reply assembled
    from chunks (``beluga_trio.llm.aggregate``) has ``role=Role.ASSISTANT`` and carries the
    ``tool_calls``, ``reasoning``, ``finish_reason``, ``usage``, ``model_id`` and ``refusal``
    of the stream; a non-empty ``refusal`` means the model declined to answer (``content`` is
    then usually empty).
    A tool's answer has ``role=Role.TOOL`` and the ``tool_call_id`` it answers.

    Build them with `Message.system`, `Message.user`, `Message.assistant`, `Message.tool`, or
    directly.
    """

    role: Role = attrs.field(converter=_role)
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_calls)
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model_id: str = ""
    tool_call_id: str | None = None
    name: str | None = None
    refusal: str = ""

    @classmethod
    def system(cls, content: str) -> Message:
        """A system (instructions) message."""
        return cls(Role.SYSTEM, content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls(Role.USER, content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        """An assistant message, e.g. an earlier reply put back into the conversation."""
        return cls(Role.ASSISTANT, content, tool_calls)

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        """A tool's result, answering the tool call with id ``tool_call_id``."""
        return cls(Role.TOOL, content, tool_call_id=tool_call_id)
