"""`OpenAIChatModel`: a chat model served by any OpenAI-compatible Chat Completions endpoint
(OpenAI, vLLM, llama.cpp, Ollama, LiteLLM...), streamed over server-sent events with httpx2
(the maintained continuation of httpx; same API).

Needs the ``http`` extra: ``pip install beluga_trio[http]``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from types import MappingProxyType
from typing import Any, Final, final

import trio

try:
    import httpx2
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "beluga_trio.llm.openai needs httpx2: install the extra with "
        "`pip install beluga_trio[http]`",
        name=exc.name,
    ) from exc

from .._sources import stream
from .._stream import Stream
from ..schema import Message, StreamChunk
from ._aggregate import aggregate
from ._errors import (
    MalformedEventError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    shorten,
)
from ._model import Prompt, as_messages
from ._openai_format import error_message, parse_chunk, request_body
from ._sse import SSEDecoder, SSEEvent

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "OpenAIChatModel"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"

#: Connecting may take 10 s; a read (the gap between two pieces of the body) up to 5
#: minutes, since reasoning models can think that long before they write. Limit the time to
#: the first token or between tokens with `Stream.timeout`.
DEFAULT_TIMEOUT: Final = httpx2.Timeout(300.0, connect=10.0)


@final
class OpenAIChatModel:
    """A chat model behind ``POST {base_url}/chat/completions``, streamed.

    - ``model``: the model name sent in each request;
    - ``base_url``: the API root, e.g. ``"http://localhost:8000/v1"``;
    - ``api_key``: sent as ``Authorization: Bearer ...``; ``None`` (the default) reads the
      ``OPENAI_API_KEY`` environment variable, ``""`` sends no key (local servers);
    - ``client``: an `httpx2.AsyncClient` to send the requests with (connections are then
      reused; you open and close it). Without one, each opening of a stream uses a client of
      its own, closed with the stream;
    - ``timeout``: httpx2's timeouts for each request (`DEFAULT_TIMEOUT`);
    - ``headers``: extra request headers; ``options``: default request options, overridden by
      the keyword arguments of `stream` and `invoke`.

    The API key never appears in this object's repr nor in any error it raises.
    """

    __slots__ = ("_api_key", "_client", "_headers", "_options", "_ssl", "_timeout", "_url", "model")

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        client: httpx2.AsyncClient | None = None,
        timeout: httpx2.Timeout | float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"model must be a non-empty model name, got {model!r}")
        self.model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get("OPENAI_API_KEY", "") if api_key is None else api_key
        self._client = client
        # Built once: it is the slow part (tens of ms) of making a client per stream.
        self._ssl = None if client is not None else httpx2.create_ssl_context()
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._options = MappingProxyType(dict(options or {}))

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, url={self._url!r})"

    def stream(self, prompt: Prompt, /, **options: Any) -> Stream[StreamChunk]:
        """The reply as a cold stream of chunks: each opening sends one request.

        The response is held open while the stream is, and closed as soon as the consumer
        leaves (end, ``break``, error, cancellation, a `~beluga_trio.Stream.timeout`): the
        server sees the connection close at once.

        Errors: `ModelHTTPError` for an error status (with the server's message),
        `ModelConnectionError` when the server cannot be reached or the stream breaks off
        before ``data: [DONE]``, `MalformedEventError` for data that is not a valid chunk,
        `ModelError` for an error the server reports inside the stream.
        """
        body = request_body(self.model, as_messages(prompt), {**self._options, **options})
        return _stream_reply(self, body)

    async def invoke(self, prompt: Prompt, /, **options: Any) -> Message:
        """The whole reply (`~beluga_trio.llm.aggregate` of `stream`); the same errors."""
        return await aggregate(self.stream(prompt, **options))

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", **self._headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[API key]") if self._api_key else text


@stream
async def _stream_reply(model: OpenAIChatModel, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
    # Holds the response open across `yield`: a @stream body runs in a task of its own, and
    # is closed (or cancelled) the moment the consumer leaves, which runs the `finally`s.
    client = model._client
    if client is None:
        client = httpx2.AsyncClient(verify=model._ssl if model._ssl is not None else True)
    try:
        request = client.build_request(
            "POST", model._url, json=body, headers=model._request_headers(), timeout=model._timeout
        )
        try:
            response = await client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise ModelConnectionError(
                f"cannot reach the model server at {model._url}: {_describe(exc)}"
            ) from exc
        byte_chunks: AsyncIterator[bytes] | None = None
        try:
            if not response.is_success:
                raise await _http_error(model, response)
            if response.headers.get("content-type", "").startswith("application/json"):
                content = await _read(model, response)
                raise MalformedEventError(
                    "expected a stream of server-sent events, got a JSON response",
                    content.decode("utf-8", "replace"),
                )
            decoder = SSEDecoder()
            byte_chunks = response.aiter_bytes()
            finished = False  # a chunk with a finish reason was seen
            while True:
                try:
                    data = await anext(byte_chunks)
                except StopAsyncIteration:
                    data = None
                except httpx2.HTTPError as exc:
                    raise ModelConnectionError(
                        f"the stream from {model._url} broke off: {_describe(exc)}"
                    ) from exc
                for event in decoder.end() if data is None else decoder.feed(data):
                    if event.data == "[DONE]":
                        if model._client is not None:
                            await _read_to_end(byte_chunks)
                        return
                    chunk = _chunk(event)
                    if chunk is not None:
                        finished = finished or chunk.finish_reason is not None
                        yield chunk
                if data is None:
                    break
            if not finished:
                raise ModelConnectionError(
                    f"the stream from {model._url} ended before `data: [DONE]`: "
                    "the reply is incomplete"
                )
        finally:
            # At once, even when cancelled (httpx2 shields it): the server sees the close.
            # Neither call blocks: the close is shielded inside httpx2, and reading a closed
            # response fails at once (ASYNC102).
            await response.aclose()  # noqa: ASYNC102
            if byte_chunks is not None:
                await _finish(byte_chunks)  # noqa: ASYNC102
    except ModelError as exc:
        _scrub(model, exc)
        raise
    finally:
        if model._client is None:
            await client.aclose()  # noqa: ASYNC102 - shielded inside httpx2, never blocks


def _scrub(model: OpenAIChatModel, exc: ModelError) -> None:
    """Take the API key out of an error, should the server have quoted it back."""
    if not model._api_key:
        return
    exc.args = tuple(model._redact(a) if isinstance(a, str) else a for a in exc.args)
    for name in ("message", "data", "url"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            setattr(exc, name, model._redact(value))


def _chunk(event: SSEEvent) -> StreamChunk | None:
    if event.event == "error":
        raise ModelError(f"the model server reported an error: {shorten(event.data)}")
    return parse_chunk(event.data)


#: After ``data: [DONE]``, how long the rest of the body (its last empty chunk) may take to
#: arrive; read to its end, the connection goes back to a shared client's pool for reuse.
DONE_GRACE: Final = 0.25


async def _read_to_end(byte_chunks: AsyncIterator[bytes]) -> None:
    with trio.move_on_after(DONE_GRACE):
        try:
            async for _ in byte_chunks:
                pass
        except httpx2.HTTPError:
            pass  # the reply is complete; the connection is simply not reused


async def _finish(byte_chunks: AsyncIterator[bytes]) -> None:
    """Run httpx2's chain of async generators to its end after the response was closed.

    Reading a closed response raises at once; letting it raise finishes every generator in
    the chain, which otherwise would be left suspended and finalized later by the garbage
    collector (with a `ResourceWarning` from trio).
    """
    try:
        while True:
            await anext(byte_chunks)
    except (StopAsyncIteration, httpx2.HTTPError, httpx2.StreamError):
        pass


async def _read(model: OpenAIChatModel, response: httpx2.Response) -> bytes:
    try:
        return await response.aread()
    except httpx2.HTTPError as exc:
        raise ModelConnectionError(
            f"reading the response of {model._url} failed: {_describe(exc)}"
        ) from exc


async def _http_error(model: OpenAIChatModel, response: httpx2.Response) -> ModelHTTPError:
    content = await _read(model, response)
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return ModelHTTPError(
        response.status_code,
        error_message(content),
        url=model._url,
        retry_after=retry_after,
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
