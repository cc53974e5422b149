"""`openai_app`: any `ChatModel` as an OpenAI-compatible Chat Completions API (ASGI)."""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Any, Final, final

import trio

from .._stream import Stream
from ..llm._aggregate import aggregate
from ..llm._errors import ModelError, ModelHTTPError
from ..llm._model import ChatModel
from ..schema import Message, StreamChunk, ToolCall, Usage
from ._asgi import Receive, Scope, Send, header, json_response, lifespan
from ._openai_request import BadRequestError, ChatRequest, parse_chat_request
from ._pump import check_heartbeat, log, stream_response

__all__ = ["DEFAULT_MAX_BODY", "OpenAIApp", "openai_app"]

#: The largest request body accepted, in bytes (a long conversation fits many times over).
DEFAULT_MAX_BODY: Final = 4 * 1024 * 1024

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _error_body(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _tool_delta(call: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"index": call.index}
    function: dict[str, str] = {}
    if call.id:
        out["id"] = call.id
        out["type"] = "function"
    if call.name:
        function["name"] = call.name
    function["arguments"] = call.arguments
    out["function"] = function
    return out


def _failure(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and the safe error body for a model that failed: only an upstream's own
    client-facing explanation (never a key: `OpenAIChatModel` scrubs it) is passed on."""
    if isinstance(exc, ModelHTTPError):
        if exc.status_code == 429:
            return 429, _error_body(
                "The model server is rate limiting requests; try again later.",
                "rate_limit_error",
                code="rate_limit_exceeded",
            )
        if exc.status_code in (400, 404, 413, 422):
            return 400, _error_body(exc.message, "invalid_request_error", code="upstream_rejected")
    if isinstance(exc, ModelError):
        return 502, _error_body(
            "The model server failed to answer.", "server_error", code="bad_gateway"
        )
    return 500, _error_body("The server failed to answer.", "server_error")


@final
class _ChunkFrames:
    """A stream of `StreamChunk` as ``chat.completion.chunk`` events."""

    __slots__ = ("_base", "_finished", "_first", "_include_usage", "_model", "_tools", "_usage")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
        self._model = model
        self._include_usage = include_usage
        self._first = True
        self._finished = False
        self._tools = False
        self._usage: Usage | None = None

    def _event(self, choices: list[dict[str, Any]], model_id: str = "", **extra: Any) -> bytes:
        body: dict[str, Any] = {
            **self._base,
            "model": model_id or self._model,
            "system_fingerprint": None,
        }
        body["choices"] = choices
        if self._include_usage:
            body["usage"] = None
        body.update(extra)
        return b"data: " + _dumps(body) + b"\n\n"

    def frame(self, chunk: StreamChunk) -> bytes:
        delta: dict[str, Any] = {}
        if self._first:
            self._first = False
            delta["role"] = "assistant"
            delta["content"] = chunk.delta if chunk.delta or not chunk.tool_calls else None
        elif chunk.delta:
            delta["content"] = chunk.delta
        if chunk.reasoning_delta:
            delta["reasoning_content"] = chunk.reasoning_delta
        if chunk.tool_calls:
            self._tools = True
            delta["tool_calls"] = [_tool_delta(c) for c in chunk.tool_calls]
        if chunk.usage is not None:
            self._usage = chunk.usage
        if not delta and chunk.finish_reason is None:
            return b""
        self._finished = self._finished or chunk.finish_reason is not None
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": chunk.finish_reason,
        }
        return self._event([choice], chunk.model_id)

    def trailer(self) -> bytes:
        out = b""
        if not self._finished:
            finish = "tool_calls" if self._tools else "stop"
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {},
                "logprobs": None,
                "finish_reason": finish,
            }
            out += self._event([choice])
        if self._include_usage:
            out += self._event([], usage=_usage(self._usage))
        return out + b"data: [DONE]\n\n"


def _completion(completion_id: str, created: int, model: str, reply: Message) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
        if not reply.content:
            message["content"] = None
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model_id or model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(reply.usage) or _usage(Usage()),
    }


def _name_of(model: object) -> str:
    """A model's name: its ``model`` or ``model_id`` string attribute, else its type's."""
    for attribute in ("model", "model_id"):
        found = getattr(model, attribute, None)
        if isinstance(found, str) and found:
            return found
    return type(model).__name__


class _DisconnectedError(Exception):
    """The client left while the request body was read."""


@final
class OpenAIApp:
    """The ASGI application `openai_app` returns. ``model`` and ``model_name`` are what it
    serves."""

    def __init__(
        self,
        model: ChatModel,
        *,
        model_name: str | None = None,
        api_key: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        heartbeat: float | None = 15.0,
        owned_by: str = "beluga_trio",
    ) -> None:
        if not isinstance(model, ChatModel):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"openai_app(model) takes a ChatModel (with stream and invoke), got {model!r}"
            )
        if model_name is None:
            model_name = _name_of(model)
        if not isinstance(model_name, str) or not model_name:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"model_name must be a non-empty str, got {model_name!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError("api_key must be a non-empty str, or None for no key")
        if not isinstance(max_body, int) or isinstance(max_body, bool) or max_body < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"max_body must be an int >= 1 (bytes), got {max_body!r}")
        self.model = model
        self.model_name = model_name
        self._api_key = api_key.encode() if api_key is not None else None
        self._max_body = max_body
        self._heartbeat = check_heartbeat(heartbeat)
        self._created = int(time.time())
        self._owned_by = owned_by

    def __repr__(self) -> str:
        return f"OpenAIApp({self.model!r}, model_name={self.model_name!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise TypeError(f"openai_app serves HTTP requests, not {scope['type']!r}")
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/")
        if self._api_key is not None and not self._authorized(scope):
            await json_response(
                send,
                401,
                _error_body(
                    "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
                ),
                [(b"www-authenticate", b"Bearer")],
            )
            return
        if path == "/v1/chat/completions":
            if method != "POST":
                await self._not_allowed(send, method, path, b"POST")
                return
            try:
                await self._chat(scope, receive, send)
            except BadRequestError as exc:
                await json_response(
                    send,
                    400,
                    _error_body(exc.message, "invalid_request_error", exc.param, exc.code),
                )
            except _DisconnectedError:
                return
        elif path == "/v1/models":
            if method not in ("GET", "HEAD"):
                await self._not_allowed(send, method, path, b"GET")
                return
            await json_response(send, 200, {"object": "list", "data": [self._model_object()]})
        elif path == f"/v1/models/{self.model_name}":
            await json_response(send, 200, self._model_object())
        else:
            await json_response(
                send,
                404,
                _error_body(
                    f"Unknown request URL: {method} {path}.",
                    "invalid_request_error",
                    code="unknown_url",
                ),
            )

    def _model_object(self) -> dict[str, Any]:
        return {
            "id": self.model_name,
            "object": "model",
            "created": self._created,
            "owned_by": self._owned_by,
        }

    def _authorized(self, scope: Scope) -> bool:
        assert self._api_key is not None
        value = header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("latin-1"), self._api_key
        )

    async def _not_allowed(self, send: Send, method: str, path: str, allow: bytes) -> None:
        await json_response(
            send,
            405,
            _error_body(
                f"Method {method} is not allowed for {path}.",
                "invalid_request_error",
                code="method_not_allowed",
            ),
            [(b"allow", allow)],
        )

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        too_large = BadRequestError(
            f"The request body is larger than this server accepts ({self._max_body} bytes).",
            code="request_too_large",
        )
        length = header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > self._max_body:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _DisconnectedError
            body: bytes = message.get("body", b"")
            size += len(body)
            if size > self._max_body:
                raise too_large
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = parse_chat_request(await self._read_body(scope, receive))
        try:
            stream = self.model.stream(request.messages, **request.options)
        except (TypeError, ValueError) as exc:
            log.warning("the model refused the options of a request: %r", exc)
            raise BadRequestError(
                "The model does not accept the options of this request.",
                code="unsupported_parameter",
            ) from exc
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        handle = self._stream if request.stream else self._complete
        await handle(
            scope=scope,
            receive=receive,
            send=send,
            request=request,
            stream=stream,
            completion_id=completion_id,
            created=created,
        )

    async def _stream(
        self,
        *,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: ChatRequest,
        stream: Stream[StreamChunk],
        completion_id: str,
        created: int,
    ) -> None:
        frames = _ChunkFrames(completion_id, created, request.model, request.include_usage)

        def error_frame(exc: Exception) -> bytes:
            return b"event: error\ndata: " + _dumps(_failure(exc)[1]) + b"\n\n"

        def error_response(exc: Exception) -> tuple[int, bytes]:
            status, body = _failure(exc)
            return status, _dumps(body)

        await stream_response(
            scope,
            receive,
            send,
            stream,
            status=200,
            headers=_SSE_HEADERS,
            frame=frames.frame,
            trailer=frames.trailer,
            error_frame=error_frame,
            heartbeat=self._heartbeat,
            error_response=error_response,
        )

    async def _complete(
        self,
        *,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: ChatRequest,
        stream: Stream[StreamChunk],
        completion_id: str,
        created: int,
    ) -> None:
        reply: Message | None = None
        error: Exception | None = None

        async def watch(cancel_scope: trio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            try:
                reply = await aggregate(stream)
            except Exception as exc:  # noqa: BLE001 - any failure is answered (500) and logged
                error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            log.error(
                "the model failed to answer %s %s", scope["method"], scope["path"], exc_info=error
            )
            status, body = _failure(error)
            await json_response(send, status, body)
        elif reply is not None:
            await json_response(
                send, 200, _completion(completion_id, created, request.model, reply)
            )
        # else: the client left, and the model's stream was stopped.


def openai_app(
    model: ChatModel,
    *,
    model_name: str | None = None,
    api_key: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    heartbeat: float | None = 15.0,
) -> OpenAIApp:
    """``model`` served as an OpenAI-compatible API: an ASGI application.

    - ``POST /v1/chat/completions``: streaming (``"stream": true``, server-sent
      ``chat.completion.chunk`` events ending with ``data: [DONE]``; with
      ``stream_options.include_usage`` a last chunk carries the usage) and not (one
      ``chat.completion``). ``tools``, ``tool_choice``, ``temperature``, ``max_tokens`` and
      the other common options are checked and passed to ``model.stream`` as keyword
      arguments; tool-call deltas go out in OpenAI's shape.
    - ``GET /v1/models`` lists ``model_name`` (default: the model's ``model`` or
      ``model_id`` attribute).
    - A bad request (invalid JSON, no ``messages``, a wrong type, a body over ``max_body``
      bytes, an unsupported option such as ``n > 1``) gets 400 with OpenAI's error body
      (``{"error": {"message", "type", "param", "code"}}``), naming the field. With
      ``api_key``, a request without ``Authorization: Bearer <api_key>`` gets 401.
    - **Disconnect**: when the client leaves, the model's stream is left at once (for
      `~beluga_trio.llm.openai.OpenAIChatModel`, the upstream request is closed).
    - A model that fails before its first chunk gets an error status (429 for an upstream
      429, 502 for a `~beluga_trio.llm.ModelError`, 500 otherwise); after it, the stream ends
      with an ``event: error``. Messages are generic, the full error is logged to the
      ``beluga_trio.web`` logger.
    """
    return OpenAIApp(
        model, model_name=model_name, api_key=api_key, max_body=max_body, heartbeat=heartbeat
    )
