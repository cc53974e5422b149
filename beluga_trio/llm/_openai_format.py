"""The OpenAI Chat Completions wire format: requests out, streamed chunks in.

Pure functions with no I/O and no httpx, so that the format is tested on its own.

Every function that quotes a server's text in an error takes ``redact``, which removes the
secrets the model was given *before* the text is cut short (see `._errors`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast, final

from ..schema import Message, StreamChunk, ToolCall, Usage
from ._errors import MalformedEventError, ModelStreamError, Redact, shorten

__all__ = [
    "ErrorReport",
    "error_report",
    "message_to_json",
    "parse_chunk",
    "request_body",
]


def _keep(text: str) -> str:
    return text


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
    ``temperature``, ...), with ``"stream": true``.

    ``stream_options`` defaults to ``{"include_usage": true}`` (the usage arrives in a last
    chunk); a mapping given in ``options`` is sent with ``include_usage`` added unless it sets
    it; ``stream_options=None`` sends none at all (servers that reject the field).
    """
    body: dict[str, Any] = {"model": model, "messages": [message_to_json(m) for m in messages]}
    body.update(options)
    body["stream"] = True
    if "stream_options" not in body:
        body["stream_options"] = {"include_usage": True}
    else:
        stream_options = body["stream_options"]
        if stream_options is None:
            del body["stream_options"]
        elif isinstance(stream_options, Mapping):
            given = cast("Mapping[str, Any]", stream_options)
            body["stream_options"] = {"include_usage": True, **given}
        else:
            raise TypeError(
                "stream_options must be a mapping (e.g. {'include_usage': True}) or None to "
                f"send none, got {stream_options!r}"
            )
    return body


# ------------------------------------------------------------------------------ chunks

#: Delta fields the fast path knows carry nothing when they are null.
_NULLABLE: Final = frozenset(
    {"role", "refusal", "reasoning_content", "reasoning", "tool_calls", "function_call", "audio"}
)

_CHUNK: Final = "chat.completion.chunk"


@final
class _Parse:
    """The validating parser of one event's JSON: every field is checked, and a field of the
    wrong type raises `MalformedEventError` quoting the event."""

    __slots__ = ("data", "redact")

    def __init__(self, data: str, redact: Redact) -> None:
        self.data = data
        self.redact = redact

    def malformed(self, problem: str) -> MalformedEventError:
        return MalformedEventError(problem, self.data, redact=self.redact)

    def obj(self, value: object, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.malformed(f"{what} should be a JSON object")
        return cast("dict[str, Any]", value)

    def get_object(self, obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
        value = obj.get(key)
        return {} if value is None else self.obj(value, f"{what}.{key}")

    def get_list(self, obj: dict[str, Any], key: str, what: str) -> list[object]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.malformed(f"{what}.{key} should be a list")
        return cast("list[object]", value)

    def get_str(self, obj: dict[str, Any], key: str, what: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self.malformed(f"{what}.{key} should be a string")
        return value

    def get_count(self, obj: dict[str, Any], key: str, what: str) -> int:
        value = obj.get(key)
        if value is None:
            return 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.malformed(f"{what}.{key} should be an int >= 0")
        return value

    def usage(self, event: dict[str, Any]) -> Usage | None:
        if event.get("usage") is None:
            return None
        usage = self.get_object(event, "usage", "chunk")
        prompt = self.get_count(usage, "prompt_tokens", "usage")
        completion = self.get_count(usage, "completion_tokens", "usage")
        total = (
            prompt + completion
            if usage.get("total_tokens") is None
            else self.get_count(usage, "total_tokens", "usage")
        )
        prompt_details = self.get_object(usage, "prompt_tokens_details", "usage")
        completion_details = self.get_object(usage, "completion_tokens_details", "usage")
        return Usage(
            prompt,
            completion,
            total,
            self.get_count(prompt_details, "cached_tokens", "usage.prompt_tokens_details"),
            self.get_count(
                completion_details, "reasoning_tokens", "usage.completion_tokens_details"
            ),
        )

    def tool_calls(self, delta: dict[str, Any]) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        for position, item in enumerate(self.get_list(delta, "tool_calls", "delta")):
            call = self.obj(item, "each of delta.tool_calls")
            index = call.get("index", position)
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise self.malformed("tool_calls[].index should be an int >= 0")
            function = self.get_object(call, "function", "tool_calls[]")
            calls.append(
                ToolCall(
                    index,
                    self.get_str(call, "id", "tool_calls[]") or "",
                    self.get_str(function, "name", "tool_calls[].function") or "",
                    self.get_str(function, "arguments", "tool_calls[].function") or "",
                )
            )
        return tuple(calls)

    def content(self, delta: dict[str, Any]) -> tuple[str, str, str]:
        """(text, reasoning, refusal) of ``delta.content``: a string, or a list of typed parts
        (Mistral's reasoning models: ``text`` parts and ``thinking`` parts)."""
        value = delta.get("content")
        if value is None or isinstance(value, str):
            return value or "", "", ""
        if not isinstance(value, list):
            raise self.malformed("delta.content should be a string or a list of parts")
        text: list[str] = []
        reasoning: list[str] = []
        refusal: list[str] = []
        for item in cast("list[object]", value):
            part = self.obj(item, "each part of delta.content")
            kind = part.get("type")
            if kind == "text":
                text.append(self.get_str(part, "text", "a text part") or "")
            elif kind == "thinking":
                reasoning.append(self.thinking(part.get("thinking")))
            elif kind == "refusal":
                refusal.append(self.get_str(part, "refusal", "a refusal part") or "")
            else:
                raise self.malformed(
                    f"delta.content has a part of type {kind!r}; expected 'text', 'thinking' "
                    "or 'refusal'"
                )
        return "".join(text), "".join(reasoning), "".join(refusal)

    def thinking(self, value: object) -> str:
        # Mistral: {"type": "thinking", "thinking": [{"type": "text", "text": "..."}]}.
        if value is None or isinstance(value, str):
            return value or ""
        if not isinstance(value, list):
            raise self.malformed("a thinking part's thinking should be a string or a list")
        out: list[str] = []
        for item in cast("list[object]", value):
            part = self.obj(item, "each part of a thinking part")
            out.append(self.get_str(part, "text", "a thinking part's text part") or "")
        return "".join(out)

    def chunk(self, parsed: object) -> StreamChunk | None:
        event = self.obj(parsed, "a chunk")
        if event.get("error") or event.get("object") == "error":
            raise self.stream_error(event)
        if "choices" not in event and event.get("usage") is None:
            kind = event.get("object")
            what = f"an object of type {kind!r}" if isinstance(kind, str) else "an object"
            raise self.malformed(f"expected a {_CHUNK}, got {what} with neither choices nor usage")
        model_id = self.get_str(event, "model", "chunk") or ""
        usage = self.usage(event)
        delta: dict[str, Any] = {}
        finish_reason: str | None = None
        for item in self.get_list(event, "choices", "chunk"):
            choice = self.obj(item, "each of choices")
            if choice.get("index", 0) != 0:
                continue
            delta = self.get_object(choice, "delta", "choices[]")
            finish_reason = self.get_str(choice, "finish_reason", "choices[]")
            break
        text, reasoning, refusal = self.content(delta)
        reasoning += (
            self.get_str(delta, "reasoning_content", "delta")
            or self.get_str(delta, "reasoning", "delta")
            or ""
        )
        refusal += self.get_str(delta, "refusal", "delta") or ""
        tool_calls = self.tool_calls(delta)
        if not (text or reasoning or refusal or tool_calls or finish_reason or usage):
            return None
        return StreamChunk(text, tool_calls, finish_reason, usage, reasoning, model_id, refusal)

    def stream_error(self, event: dict[str, Any]) -> ModelStreamError:
        report = _report(event, self.data, self.redact)
        return ModelStreamError(
            report.message,
            code=report.code,
            type=report.type,
            data=shorten(self.data, redact=self.redact),
        )


def parse_chunk(data: str, redact: Redact = _keep) -> StreamChunk | None:
    """The `StreamChunk` in the ``data`` of one ``chat.completion.chunk`` event, or ``None``
    when it carries nothing (the first chunk often holds only the role).

    Only the first choice (``index`` 0) is read. Raises `MalformedEventError` for data that
    is not JSON, not of the expected shape, or not a chunk at all, and `ModelStreamError`
    for an error the server reports inside the stream.
    """
    try:
        parsed: Any = _loads(data)
    except ValueError:
        raise MalformedEventError(
            "a server-sent event is not valid JSON", data, redact=redact
        ) from None
    if parsed.__class__ is dict:
        chunk = _fast_chunk(parsed)
        if chunk is not _SLOW:
            return chunk
    return _Parse(data, redact).chunk(parsed)


#: What `_fast_chunk` returns for an event it leaves to the validating parser (compared by
#: identity).
_SLOW: Final = StreamChunk("(the slow path)")

#: json.loads without its keyword handling (the same decoder it uses when given none).
_loads: Final = json.JSONDecoder().decode


def _fast_chunk(event: dict[str, Any]) -> StreamChunk | None:
    """The chunk of the most common event: one choice whose delta has a text ``content`` and
    nothing else that carries anything (a ``role``, nulls), no finish reason, no usage, no
    error. `_SLOW` for anything else, which the validating parser then reads. json.loads
    already typed every value; only the types the result depends on are checked."""
    choices: Any = event.get("choices")
    if choices.__class__ is not list or len(choices) != 1:
        return _SLOW
    choice: Any = choices[0]
    if choice.__class__ is not dict or choice.get("finish_reason") is not None:
        return _SLOW
    if choice.get("index", 0) != 0:
        return _SLOW
    delta: Any = choice.get("delta")
    if delta.__class__ is not dict:
        return _SLOW
    content: Any = delta.get("content")
    if content.__class__ is not str:
        return _SLOW
    if len(delta) > 1 and not (len(delta) == 2 and "role" in delta):
        for key in delta:
            if key != "content" and (
                key not in _NULLABLE or (key != "role" and delta[key] is not None)
            ):
                return _SLOW
    if event.get("usage") is not None or "error" in event:
        return _SLOW
    kind = event.get("object")
    if kind is not None and kind != _CHUNK:
        return _SLOW
    model = event.get("model")
    if model is None:
        model = ""
    elif model.__class__ is not str:
        return _SLOW
    if not content:
        return None
    return StreamChunk(content, (), None, None, "", model)


# ------------------------------------------------------------------------------ errors


@final
class ErrorReport:
    """What an error body says: ``message``, and the provider's ``code`` and ``type``."""

    __slots__ = ("code", "message", "type")

    def __init__(self, message: str, code: str | int | None, type: str | None) -> None:
        self.message = message
        self.code = code
        self.type = type


def _code(value: object, redact: Redact) -> str | int | None:
    if isinstance(value, str):
        return redact(value) if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _report(body: object, raw: str, redact: Redact) -> ErrorReport:
    """The explanation, code and type in an error body (``{"error": {"message": ...}}``,
    ``{"error": "..."}``, vLLM's flat ``{"object": "error", "message": ...}``, FastAPI's
    ``{"detail": ...}``), else the start of the raw text."""
    if isinstance(body, dict):
        fields = cast("dict[str, Any]", body)
        error: Any = fields.get("error")
        if isinstance(error, list) and error:
            # Gemini's OpenAI endpoint: [{"error": {...}}]
            first: Any = next(iter(cast("list[object]", error)))
            if isinstance(first, dict):
                error = cast("dict[str, Any]", first).get("error", first)
        if isinstance(error, dict):
            inner = cast("dict[str, Any]", error)
            message = inner.get("message")
            kind = inner.get("type")
            return ErrorReport(
                shorten(message, redact=redact)
                if isinstance(message, str) and message
                else shorten(raw.strip(), redact=redact),
                _code(inner.get("code"), redact),
                redact(kind) if isinstance(kind, str) and kind else None,
            )
        kind = fields.get("type")
        code = _code(fields.get("code"), redact)
        typed = redact(kind) if isinstance(kind, str) and kind else None
        if isinstance(error, str) and error:
            return ErrorReport(shorten(error, redact=redact), code, typed)
        for key in ("message", "detail"):
            value = fields.get(key)
            if isinstance(value, str) and value:
                return ErrorReport(shorten(value, redact=redact), code, typed)
    text = shorten(raw.strip(), redact=redact) or "(no explanation in the response)"
    return ErrorReport(text, None, None)


def error_report(content: bytes, redact: Redact = _keep) -> ErrorReport:
    """What the body of an HTTP error response says."""
    raw = content.decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return _report(body, raw, redact)
