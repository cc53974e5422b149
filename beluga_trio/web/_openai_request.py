"""Checking an OpenAI Chat Completions request: JSON in, messages and model options out, or
a `BadRequestError` that names the field, what was given and what is expected."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import attrs

from ..schema import Message, Role, ToolCall

__all__ = ["BadRequestError", "ChatRequest", "parse_chat_request"]


class BadRequestError(Exception):
    """A request the API refuses with 400 (``code`` and ``param`` as in OpenAI's errors)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@attrs.frozen
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    stream: bool
    include_usage: bool
    options: dict[str, Any]  # passed to ChatModel.stream as keyword arguments


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _fail(param: str, value: object, expected: str) -> BadRequestError:
    return BadRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)}.",
        param,
        "invalid_type",
    )


def _number(low: float, high: float) -> Callable[[str, object], object]:
    def check(param: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(param, value, "a number")
        if not (math.isfinite(value) and low <= value <= high):
            raise BadRequestError(
                f"Invalid value for '{param}': expected a number from {low} to {high}, "
                f"got {value}.",
                param,
                "invalid_value",
            )
        return value

    return check


def _integer(low: int) -> Callable[[str, object], object]:
    def check(param: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(param, value, "an integer")
        if value < low:
            raise BadRequestError(
                f"Invalid value for '{param}': expected an integer >= {low}, got {value}.",
                param,
                "invalid_value",
            )
        return value

    return check


def _string(param: str, value: object) -> object:
    if not isinstance(value, str):
        raise _fail(param, value, "a string")
    return value


def _boolean(param: str, value: object) -> object:
    if not isinstance(value, bool):
        raise _fail(param, value, "a boolean")
    return value


def _object(param: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(param, value, "an object")
    return cast("dict[str, Any]", value)


def _array(param: str, value: object) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(param, value, "an array")
    return cast("Sequence[Any]", value)


def _stop(param: str, value: object) -> object:
    if isinstance(value, str):
        return value
    items = _array(param, value)
    if len(items) > 4:
        raise BadRequestError(f"Invalid value for '{param}': at most 4 stop sequences.", param)
    for i, item in enumerate(items):
        _string(f"{param}[{i}]", item)
    return items


def _tools(param: str, value: object) -> object:
    for i, tool in enumerate(_array(param, value)):
        fields = _object(f"{param}[{i}]", tool)
        if fields.get("type") != "function":
            raise BadRequestError(
                f"Invalid value for '{param}[{i}].type': expected 'function'.", f"{param}[{i}]"
            )
        function = _object(f"{param}[{i}].function", fields.get("function"))
        _string(f"{param}[{i}].function.name", function.get("name"))
    return value


def _tool_choice(param: str, value: object) -> object:
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise BadRequestError(
                f"Invalid value for '{param}': expected 'none', 'auto', 'required' or an "
                f"object, got {value!r}.",
                param,
                "invalid_value",
            )
        return value
    fields = _object(param, value)
    _string(
        f"{param}.function.name", _object(f"{param}.function", fields.get("function")).get("name")
    )
    return value


def _response_format(param: str, value: object) -> object:
    _string(f"{param}.type", _object(param, value).get("type"))
    return value


def _metadata(param: str, value: object) -> object:
    for key, item in _object(param, value).items():
        _string(f"{param}.{key}", item)
    return value


#: The options passed on to the model, with their checks.
OPTIONS: Final[dict[str, Callable[[str, object], object]]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "seed": _integer(-(2**63)),
    "stop": _stop,
    "user": _string,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _boolean,
    "response_format": _response_format,
    "metadata": _metadata,
    "reasoning_effort": _string,
}

_ROLES: Final = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
    "tool": Role.TOOL,
}


def _content(param: str, value: object, *, nullable: bool) -> str:
    if value is None:
        if nullable:
            return ""
        raise _fail(param, value, "a string or an array of text parts")
    if isinstance(value, str):
        return value
    parts: list[str] = []
    for i, part in enumerate(_array(param, value)):
        fields = _object(f"{param}[{i}]", part)
        kind = fields.get("type")
        if kind != "text":
            raise BadRequestError(
                f"Unsupported content part type {kind!r} in '{param}[{i}]': this server "
                "takes text parts only.",
                f"{param}[{i}].type",
                "unsupported_value",
            )
        text = _string(f"{param}[{i}].text", fields.get("text"))
        parts.append(cast("str", text))
    return "".join(parts)


def _tool_calls(param: str, value: object) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for i, raw in enumerate(_array(param, value)):
        call = _object(f"{param}[{i}]", raw)
        function = _object(f"{param}[{i}].function", call.get("function"))
        calls.append(
            ToolCall(
                i,
                cast("str", _string(f"{param}[{i}].id", call.get("id"))),
                cast("str", _string(f"{param}[{i}].function.name", function.get("name"))),
                cast(
                    "str",
                    _string(f"{param}[{i}].function.arguments", function.get("arguments", "")),
                ),
            )
        )
    return tuple(calls)


def _message(i: int, raw: object) -> Message:
    param = f"messages[{i}]"
    fields = _object(param, raw)
    role_name = fields.get("role")
    role = _ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise BadRequestError(
            f"Invalid value for '{param}.role': expected one of 'system', 'developer', 'user', "
            f"'assistant', 'tool', got {role_name!r}.",
            f"{param}.role",
            "invalid_value",
        )
    tool_calls: tuple[ToolCall, ...] = ()
    if role is Role.ASSISTANT and fields.get("tool_calls") is not None:
        tool_calls = _tool_calls(f"{param}.tool_calls", fields["tool_calls"])
    content = _content(f"{param}.content", fields.get("content"), nullable=role is Role.ASSISTANT)
    name = fields.get("name")
    if name is not None:
        _string(f"{param}.name", name)
    tool_call_id: str | None = None
    if role is Role.TOOL:
        tool_call_id = cast("str", _string(f"{param}.tool_call_id", fields.get("tool_call_id")))
    return Message(
        role, content, tool_calls, tool_call_id=tool_call_id, name=cast("str | None", name)
    )


def parse_chat_request(body: bytes) -> ChatRequest:
    """The request in ``body``, checked; raises `BadRequestError`."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequestError(
            "We could not parse the JSON body of your request: it is not valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise BadRequestError("The request body must be a JSON object.", code="invalid_type")
    fields = cast("dict[str, Any]", data)
    model = fields.get("model")
    if model is None:
        raise BadRequestError(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    _string("model", model)
    raw_messages = fields.get("messages")
    if raw_messages is None:
        raise BadRequestError(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    messages = tuple(_message(i, m) for i, m in enumerate(_array("messages", raw_messages)))
    if not messages:
        raise BadRequestError(
            "Invalid 'messages': empty array. Expected an array with at least 1 message.",
            "messages",
            "empty_array",
        )
    stream = bool(_boolean("stream", fields.get("stream", False)))
    include_usage = False
    if fields.get("stream_options") is not None:
        if not stream:
            raise BadRequestError(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        stream_options = _object("stream_options", fields["stream_options"])
        for key in stream_options:
            if key != "include_usage":
                raise BadRequestError(
                    f"Unrecognized stream option: 'stream_options.{key}'.",
                    f"stream_options.{key}",
                    "unsupported_parameter",
                )
        include_usage = bool(
            _boolean("stream_options.include_usage", stream_options.get("include_usage", False))
        )
    options: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("model", "messages", "stream", "stream_options") or value is None:
            continue
        if key == "n":
            if isinstance(value, bool) or value != 1:
                raise BadRequestError(
                    "Unsupported value for 'n': this server returns one choice (n=1).",
                    "n",
                    "unsupported_value",
                )
            continue
        if key == "logprobs":
            if value is not False:
                raise BadRequestError(
                    "Unsupported parameter: 'logprobs' is not supported by this server.",
                    "logprobs",
                    "unsupported_parameter",
                )
            continue
        check = OPTIONS.get(key)
        if check is None:
            raise BadRequestError(
                f"Unrecognized request argument supplied: {key}", key, "unsupported_parameter"
            )
        options[key] = check(key, value)
    return ChatRequest(cast("str", model), messages, stream, include_usage, options)
