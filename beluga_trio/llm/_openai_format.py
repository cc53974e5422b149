"""The OpenAI Chat Completions wire format: requests out, streamed chunks in.

Pure functions with no I/O and no httpx, so that the format is tested on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from ..schema import Message, StreamChunk, ToolCall, Usage
from ._errors import MalformedEventError, ModelError, shorten

__all__ = ["error_message", "error_text", "message_to_json", "parse_chunk", "request_body"]


def message_to_json(message: Message) -> dict[str, Any]:
    """A `Message` as the API's JSON object."""
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
        if not message.content:
            out["content"] = None
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def request_body(
    model: str, messages: tuple[Message, ...], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of a streaming request; ``options`` are added as they are (``tools``,
    ``temperature``, ...), but streaming with usage reporting is always asked for."""
    body: dict[str, Any] = {"model": model, "messages": [message_to_json(m) for m in messages]}
    body.update(options)
    body["stream"] = True
    stream_options = body.get("stream_options")
    extra: Mapping[str, Any] = {}
    if isinstance(stream_options, Mapping):
        extra = cast("Mapping[str, Any]", stream_options)
    body["stream_options"] = {**extra, "include_usage": True}
    return body


def _object(value: object, what: str, data: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEventError(f"{what} should be a JSON object", data)
    return cast("dict[str, Any]", value)


def _get_object(obj: dict[str, Any], key: str, what: str, data: str) -> dict[str, Any]:
    value = obj.get(key)
    return {} if value is None else _object(value, f"{what}.{key}", data)


def _get_list(obj: dict[str, Any], key: str, what: str, data: str) -> list[object]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedEventError(f"{what}.{key} should be a list", data)
    return cast("list[object]", value)


def _get_str(obj: dict[str, Any], key: str, what: str, data: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedEventError(f"{what}.{key} should be a string", data)
    return value


def _get_count(obj: dict[str, Any], key: str, what: str, data: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEventError(f"{what}.{key} should be an int >= 0", data)
    return value


def _usage(event: dict[str, Any], data: str) -> Usage | None:
    if event.get("usage") is None:
        return None
    usage = _get_object(event, "usage", "chunk", data)
    prompt = _get_count(usage, "prompt_tokens", "usage", data) or 0
    completion = _get_count(usage, "completion_tokens", "usage", data) or 0
    total = _get_count(usage, "total_tokens", "usage", data)
    return Usage(prompt, completion, prompt + completion if total is None else total)


def _tool_calls(delta: dict[str, Any], data: str) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for position, item in enumerate(_get_list(delta, "tool_calls", "delta", data)):
        call = _object(item, "each of delta.tool_calls", data)
        index = call.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MalformedEventError("tool_calls[].index should be an int >= 0", data)
        function = _get_object(call, "function", "tool_calls[]", data)
        calls.append(
            ToolCall(
                index,
                _get_str(call, "id", "tool_calls[]", data) or "",
                _get_str(function, "name", "tool_calls[].function", data) or "",
                _get_str(function, "arguments", "tool_calls[].function", data) or "",
            )
        )
    return tuple(calls)


def parse_chunk(data: str) -> StreamChunk | None:
    """The `StreamChunk` in the ``data`` of one ``chat.completion.chunk`` event, or ``None``
    when it carries nothing (the first chunk often holds only the role).

    Only the first choice (``index`` 0) is read. Raises `MalformedEventError` for data that
    is not JSON or not of the expected shape, and `ModelError` for an error the server
    reports inside the stream.
    """
    try:
        parsed: object = json.loads(data)
    except ValueError:
        raise MalformedEventError("a server-sent event is not valid JSON", data) from None
    event = _object(parsed, "a chunk", data)
    if event.get("error"):
        raise ModelError(f"the model server reported an error: {error_text(event, data)}")
    model_id = _get_str(event, "model", "chunk", data) or ""
    usage = _usage(event, data)
    delta: dict[str, Any] = {}
    finish_reason: str | None = None
    for item in _get_list(event, "choices", "chunk", data):
        choice = _object(item, "each of choices", data)
        if choice.get("index", 0) != 0:
            continue
        delta = _get_object(choice, "delta", "choices[]", data)
        finish_reason = _get_str(choice, "finish_reason", "choices[]", data)
        break
    text = _get_str(delta, "content", "delta", data) or ""
    reasoning = (
        _get_str(delta, "reasoning_content", "delta", data)
        or _get_str(delta, "reasoning", "delta", data)
        or ""
    )
    tool_calls = _tool_calls(delta, data)
    if not (text or reasoning or tool_calls or finish_reason or usage):
        return None
    return StreamChunk(text, tool_calls, finish_reason, usage, reasoning, model_id)


def error_text(body: object, raw: str) -> str:
    """The server's explanation in an error body (``{"error": {"message": ...}}`` and the
    usual variants), else the start of the raw text."""
    if isinstance(body, dict):
        fields = cast("dict[str, Any]", body)
        error = fields.get("error")
        if isinstance(error, dict):
            message = cast("dict[str, Any]", error).get("message")
            if isinstance(message, str) and message:
                return shorten(message)
        if isinstance(error, str) and error:
            return shorten(error)
        for key in ("message", "detail"):
            value = fields.get(key)
            if isinstance(value, str) and value:
                return shorten(value)
    return shorten(raw.strip()) or "(no explanation in the response)"


def error_message(content: bytes) -> str:
    """The server's explanation in the body of an HTTP error response."""
    raw = content.decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return error_text(body, raw)
