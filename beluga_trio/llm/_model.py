"""The `ChatModel` protocol and the prompt forms a model accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from .._stream import Stream
from ..schema import Message, StreamChunk

__all__ = ["ChatModel", "Prompt", "as_messages"]

Prompt: TypeAlias = str | Sequence[Message]
"""What a model is asked: the messages of a conversation, or one user message as a `str`."""


def as_messages(prompt: Prompt) -> tuple[Message, ...]:
    """The messages of a prompt: a `str` is one user message. Raises `TypeError` for
    anything that is not a `str` or a sequence of `~beluga_trio.schema.Message`."""
    if isinstance(prompt, str):
        return (Message.user(prompt),)
    messages = tuple(prompt)
    for message in messages:
        if not isinstance(message, Message):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"a prompt is a str or a sequence of Message objects, got {message!r} in it"
            )
    return messages


@runtime_checkable
class ChatModel(Protocol):
    """A chat model that streams its reply.

    ``stream(prompt, **options)`` returns a cold `~beluga_trio.Stream` of
    `~beluga_trio.schema.StreamChunk`: nothing is sent until it is opened, every opening is one
    request, and leaving the opening (end, ``break``, error, cancellation, a
    `~beluga_trio.Stream.timeout`) ends the request at once. ``options`` are the model's
    request options (``temperature``, ``max_tokens``, ``tools``...).

    ``await invoke(prompt, **options)`` is "Invoke from Stream": the whole reply as one
    `~beluga_trio.schema.Message`, i.e. `beluga_trio.llm.aggregate` of ``stream(...)``.
    """

    def stream(self, prompt: Prompt, /, **options: Any) -> Stream[StreamChunk]:
        """The reply as a cold stream of chunks."""
        ...

    async def invoke(self, prompt: Prompt, /, **options: Any) -> Message:
        """The whole reply, aggregated from `stream`."""
        ...
