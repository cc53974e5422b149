"""`OpenAIChatModel`: a chat model served by any OpenAI-compatible Chat Completions endpoint
(OpenAI, vLLM, llama.cpp, Ollama, LiteLLM...), streamed over server-sent events with httpx2
(the maintained continuation of httpx; same API).

Needs the ``http`` extra: ``pip install beluga_trio[http]``.
"""

from __future__ import annotations

import functools
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self, final

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
    IncompleteReplyError,
    MalformedEventError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelStreamError,
    Redactor,
    shorten,
)
from ._flatten import flatten
from ._model import Prompt, as_messages
from ._openai_format import error_report, parse_chunk, request_body
from ._retry import backoff, is_retryable, retry_after
from ._sse import SSEDecoder

__all__ = ["CREDENTIAL_HEADERS", "DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "OpenAIChatModel"]

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"

#: Connecting may take 10 s; a read (the gap between two pieces of the body) up to 5
#: minutes, since reasoning models can think that long before they write. Limit the time to
#: the first token or between tokens with `Stream.timeout`.
DEFAULT_TIMEOUT: Final = httpx2.Timeout(300.0, connect=10.0)

#: Request headers whose values are credentials (compared case-insensitively): their values
#: are scrubbed from every error like the API key. Name more with ``secret_headers=``.
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",  # Azure OpenAI
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "cookie",
    }
)

#: The most of an error response's body that is read (the rest is not waited for).
ERROR_BODY_LIMIT: Final = 64 * 1024


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Built once per process and shared: loading the CA certificates is the slow part (tens
    # of ms) of making a client.
    return httpx2.create_ssl_context()


@final
class OpenAIChatModel:
    """A chat model behind ``POST {base_url}/chat/completions``, streamed.

    - ``model``: the model name sent in each request;
    - ``base_url``: the API root, e.g. ``"http://localhost:8000/v1"``;
    - ``api_key``: sent as ``Authorization: Bearer ...``; ``None`` (the default) reads the
      ``OPENAI_API_KEY`` environment variable, ``""`` sends no key (local servers);
    - ``client``: an `httpx2.AsyncClient` of yours to send the requests with (you open and
      close it). Without one the model makes its own on first use and keeps it, so that its
      requests reuse one connection: close the model with ``async with model:`` or
      ``await model.aclose()``, in the same ``trio.run``;
    - ``timeout``: httpx2's timeouts for each request (`DEFAULT_TIMEOUT`);
    - ``headers``: extra request headers; the values of credential headers
      (`CREDENTIAL_HEADERS`, and those named in ``secret_headers``) are scrubbed from errors
      like the key;
    - ``options``: default request options, overridden by the keyword arguments of `stream`
      and `invoke` (``stream_options=None`` sends no ``stream_options``);
    - ``retries``: how many times a failed request is sent again (default 0: never). Only a
      retryable failure (429 unless the quota is exhausted, 408, 409, 5xx, a connection that
      cannot be made or breaks off) and only while no chunk has reached the consumer; the
      wait is the server's ``retry-after-ms``/``Retry-After``, else exponential backoff with
      jitter from ``retry_backoff`` seconds, at most ``retry_max_wait`` (a server asking for
      more gets its error raised instead);
    - ``require_finish_reason``: a reply that ends without a finish reason raises
      `~beluga_trio.llm.IncompleteReplyError` (default); ``False`` accepts it (servers that
      never send one).

    No secret the model was given appears in its repr nor in any error it raises.
    """

    __slots__ = (
        "_client",
        "_headers",
        "_options",
        "_owned",
        "_owned_run",
        "_redact",
        "_require_finish",
        "_retries",
        "_retry_backoff",
        "_retry_max_wait",
        "_timeout",
        "_url",
        "model",
    )

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        client: httpx2.AsyncClient | None = None,
        timeout: httpx2.Timeout | float | None = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        secret_headers: Iterable[str] = (),
        options: Mapping[str, Any] | None = None,
        retries: int = 0,
        retry_backoff: float = 0.5,
        retry_max_wait: float = 60.0,
        require_finish_reason: bool = True,
    ) -> None:
        if not isinstance(model, str) or not model:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"model must be a non-empty model name, got {model!r}")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        for what, seconds in (("retry_backoff", retry_backoff), ("retry_max_wait", retry_max_wait)):
            if not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise ValueError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")
        self.model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get("OPENAI_API_KEY", "") if api_key is None else api_key
        self._headers = {"Accept": "text/event-stream", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        credentials = CREDENTIAL_HEADERS | {h.lower() for h in secret_headers}
        secrets = [key]
        for name, value in self._headers.items():
            if name.lower() in credentials:
                secrets.append(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.isalpha():  # "Bearer sk-...": the token alone too
                    secrets.append(token.strip())
        self._redact = Redactor(secrets)
        self._client = client
        self._owned: httpx2.AsyncClient | None = None
        self._owned_run: trio.lowlevel.TrioToken | None = None
        self._timeout = timeout
        self._options = MappingProxyType(dict(options or {}))
        self._retries = retries
        self._retry_backoff = float(retry_backoff)
        self._retry_max_wait = float(retry_max_wait)
        self._require_finish = require_finish_reason

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model!r}, url={self._url!r})"

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client the model made for itself (and its connections), if any; a
        client you passed in is yours and stays open. The model may be used again afterwards
        (it then makes a new client). Streams still open lose their connection."""
        owned, self._owned, self._owned_run = self._owned, None, None
        if owned is not None:
            await owned.aclose()

    def _http_client(self) -> httpx2.AsyncClient:
        if self._client is not None:
            return self._client
        run = trio.lowlevel.current_trio_token()
        owned = self._owned
        if owned is None:
            owned = httpx2.AsyncClient(verify=_default_ssl_context())
            self._owned, self._owned_run = owned, run
        elif self._owned_run is not run:
            raise RuntimeError(
                "this OpenAIChatModel's HTTP client was opened in another trio.run(), whose "
                "connections cannot be used here: close the model in the run that used it "
                "(`async with model:` or `await model.aclose()`), or make a model per run"
            )
        return owned

    # ------------------------------------------------------------------ requests

    def stream(self, prompt: Prompt, /, **options: Any) -> Stream[StreamChunk]:
        """The reply as a cold stream of chunks: each opening sends one request.

        The response is held open while the stream is, and closed as soon as the consumer
        leaves (end, ``break``, error, cancellation, a `~beluga_trio.Stream.timeout`): the
        server sees the connection close at once.

        Errors: `ModelHTTPError` for an error status, `ModelConnectionError` when the server
        cannot be reached, an HTTP timeout expires or the stream breaks off,
        `IncompleteReplyError` when the reply ends without a finish reason,
        `MalformedEventError` for data that is not a valid chunk, `ModelStreamError` for an
        error the server reports inside the stream. ``stream_options`` must be a mapping or
        ``None`` (`TypeError`, when the stream is built).
        """
        body = request_body(self.model, as_messages(prompt), {**self._options, **options})
        return flatten(_reply(self, body))

    async def invoke(self, prompt: Prompt, /, **options: Any) -> Message:
        """The whole reply (`~beluga_trio.llm.aggregate` of `stream`); the same errors."""
        return await aggregate(self.stream(prompt, **options))


@stream
async def _reply(model: OpenAIChatModel, body: dict[str, Any]) -> AsyncIterator[list[StreamChunk]]:
    # Yields the chunks of each network read as one batch (`flatten` hands them out one by
    # one). Holds the response open across `yield`: a @stream body runs in a task of its own,
    # and is closed (or cancelled) the moment the consumer leaves, which runs the `finally`s.
    #
    # Errors about the connection are raised outside the `except` that caught httpx2's, so
    # that their __context__ is not the cancellation inside httpx2's own timeout.
    url = model._url
    attempt = 0
    while True:
        delivered = False  # a batch was handed to the consumer: no retry after that
        try:
            response = await _send(model, body)
            byte_chunks: AsyncIterator[bytes] | None = None
            try:
                await _check(model, response)
                reader = _Reader(model._redact)
                byte_chunks = response.aiter_bytes()
                buffered = _buffered_probe(response)
                while True:
                    data, ended, failure = await _receive(byte_chunks, buffered)
                    batch, error = reader.read(data, ended=ended)
                    if batch:
                        delivered = True
                        yield batch
                    if error is not None:
                        raise error
                    if failure is not None:
                        raise _connection_error(f"the stream from {url} broke off", failure)
                    if ended or reader.done:
                        break
                if not reader.finished and model._require_finish:
                    raise reader.incomplete(url)
                if reader.done:
                    await _read_to_end(byte_chunks)  # the connection goes back to the pool
                return
            finally:
                # At once, even when cancelled (httpx2 shields it): the server sees the close.
                # Neither call blocks: the close is shielded inside httpx2, and reading a
                # closed response fails at once (ASYNC102).
                await response.aclose()  # noqa: ASYNC102
                if byte_chunks is not None:
                    await _finish(byte_chunks)  # noqa: ASYNC102
        except ModelError as exc:
            _scrub(model, exc)
            delay = None if delivered else _retry_delay(model, exc, attempt)
            if delay is None:
                raise
        attempt += 1
        await trio.sleep(delay)


@final
class _Reader:
    """The chunks in the bytes of one network read, decoded at once (no I/O)."""

    __slots__ = ("decoder", "done", "finished", "redact")

    def __init__(self, redact: Redactor) -> None:
        self.decoder = SSEDecoder()
        self.redact = redact
        self.finished = False  # a chunk with a finish reason was seen
        self.done = False  # data: [DONE] was seen

    def read(self, data: bytes, *, ended: bool) -> tuple[list[StreamChunk], ModelError | None]:
        """The chunks completed by ``data`` (and by the end of the body if ``ended``), and
        the error that stopped the reading after them, if any: the chunks before an error
        are kept."""
        batch: list[StreamChunk] = []
        redact = self.redact
        try:
            events = self.decoder.feed(data) if data else []
            if ended:
                events += self.decoder.end()
            for event in events:
                text = event.data
                if text == "[DONE]":
                    self.done = True
                    break
                if event.event == "error":
                    raise _error_event(text, redact)
                chunk = parse_chunk(text, redact)
                if chunk is not None:
                    if chunk.finish_reason is not None:
                        self.finished = True
                    batch.append(chunk)
        except ModelError as exc:
            return batch, exc
        return batch, None

    def incomplete(self, url: str) -> IncompleteReplyError:
        end = "at `data: [DONE]`" if self.done else "before `data: [DONE]`"
        return IncompleteReplyError(
            f"the stream from {url} ended {end} without a finish reason: the reply is incomplete"
        )


#: The most pieces of a body read at once (a bound on one batch, whatever the server sends).
MAX_PIECES: Final = 256


async def _receive(
    byte_chunks: AsyncIterator[bytes], buffered: Callable[[], bool]
) -> tuple[bytes, bool, httpx2.HTTPError | None]:
    """The next bytes of the body joined with all those the HTTP layer already holds after
    them (which need no network wait), whether the body ended, and the failure that stopped
    the reading, if any (returned, not raised: the caller raises its own error outside this
    ``except``, so that its context is not the cancellation inside httpx2's timeout)."""
    pieces: list[bytes] = []
    try:
        pieces.append(await anext(byte_chunks))
        while len(pieces) < MAX_PIECES and buffered():
            pieces.append(await anext(byte_chunks))
    except StopAsyncIteration:
        return b"".join(pieces), True, None
    except httpx2.HTTPError as exc:
        return b"".join(pieces), False, exc
    return pieces[0] if len(pieces) == 1 else b"".join(pieces), False, None


def _never_buffered() -> bool:
    return False


def _buffered_probe(response: httpx2.Response) -> Callable[[], bool]:
    """A function that says whether the HTTP/1.1 layer can hand out more of the body without
    waiting on the network: bytes already received and not handed out yet.

    httpx2 hands a chunked body out one HTTP chunk at a time, and servers write one event per
    chunk, so without this every event would cost a task switch. The probe looks through
    httpx2's and httpcore2's private attributes at h11's reader and receive buffer; when they
    are not what this version expects (another transport, HTTP/2, a new release), it always
    says no and each piece is its own batch: slower, never wrong. It errs only towards "no",
    except at a chunk whose header arrived and whose data did not, a window of one segment.
    """
    try:
        body: Any = response.stream
        connection = body._stream._httpcore_stream._stream._connection
        h11_state: Any = connection._h11_state
        data: Any = h11_state._receive_buffer._data
        reader: Any = h11_state._reader
        kind = type(reader).__name__
        if kind == "ChunkedReader":
            _ = reader._bytes_in_chunk + len(reader._bytes_to_discard)
        elif kind not in ("ContentLengthReader", "Http10Reader"):
            return _never_buffered
        if not isinstance(data, bytearray):
            return _never_buffered
    except (AttributeError, TypeError):
        return _never_buffered

    if kind != "ChunkedReader":

        def buffered() -> bool:
            return len(data) > 0 and h11_state._reader is reader

        return buffered

    def chunk_buffered() -> bool:
        if h11_state._reader is not reader or reader._reading_trailer:
            return False
        skip = len(reader._bytes_to_discard)
        if not skip and reader._bytes_in_chunk:
            return len(data) > 0  # in the middle of a chunk's data
        header_end = data.find(b"\r\n", skip)  # the next chunk's size line, and data after it
        return header_end >= 0 and len(data) > header_end + 2

    return chunk_buffered


def _retry_delay(model: OpenAIChatModel, error: ModelError, attempt: int) -> float | None:
    """How long to wait before sending the request again, or None not to."""
    if attempt >= model._retries or not is_retryable(error):
        return None
    return backoff(
        attempt,
        base=model._retry_backoff,
        cap=model._retry_max_wait,
        server_says=error.retry_after if isinstance(error, ModelHTTPError) else None,
    )


async def _send(model: OpenAIChatModel, body: dict[str, Any]) -> httpx2.Response:
    client = model._http_client()
    request = client.build_request(
        "POST", model._url, json=body, headers=model._headers, timeout=model._timeout
    )
    failure: httpx2.HTTPError
    try:
        return await client.send(request, stream=True)
    except httpx2.HTTPError as exc:
        failure = exc
    raise _connection_error(f"cannot reach the model server at {model._url}", failure)


def _connection_error(what: str, cause: httpx2.HTTPError) -> ModelConnectionError:
    kind = "timed out" if isinstance(cause, httpx2.TimeoutException) else "failed"
    error = ModelConnectionError(f"{what} ({kind}): {_describe(cause)}")
    error.__cause__ = cause
    return error


def _error_event(data: str, redact: Redactor) -> ModelStreamError:
    """An ``event: error`` in the stream: its JSON error report, or its text."""
    report = error_report(data.encode(), redact)
    return ModelStreamError(
        report.message, code=report.code, type=report.type, data=shorten(data, redact=redact)
    )


def _scrub(model: OpenAIChatModel, exc: ModelError) -> None:
    """Take every secret out of an error's texts (a last pass: the texts were already
    scrubbed before they were cut short)."""
    redact = model._redact
    if not redact:
        return
    exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
    for name in ("message", "data", "url", "body", "type", "code"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            setattr(exc, name, redact(value))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


#: After ``data: [DONE]``, how long the rest of the body (its last empty chunk) may take to
#: arrive; read to its end, the connection goes back to the client's pool for reuse.
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


async def _read_some(model: OpenAIChatModel, response: httpx2.Response) -> bytes:
    """The start of a response's body, at most `ERROR_BODY_LIMIT` bytes: a server's error
    page must not hold the caller for as long as it cares to send."""
    content = bytearray()
    failure: httpx2.HTTPError | None = None
    try:
        async for data in response.aiter_bytes():
            content += data
            if len(content) >= ERROR_BODY_LIMIT:
                break
    except httpx2.HTTPError as exc:
        failure = exc
    if failure is not None:
        raise _connection_error(f"reading the response of {model._url}", failure)
    return bytes(content[:ERROR_BODY_LIMIT])


async def _check(model: OpenAIChatModel, response: httpx2.Response) -> None:
    """Raise the error a response that is not a stream of events stands for."""
    if not response.is_success:
        raise await _http_error(model, response)
    if response.headers.get("content-type", "").startswith("application/json"):
        raise await _json_instead_of_events(model, response)


async def _http_error(model: OpenAIChatModel, response: httpx2.Response) -> ModelHTTPError:
    content = await _read_some(model, response)
    redact = model._redact
    report = error_report(content, redact)
    return ModelHTTPError(
        response.status_code,
        report.message,
        url=model._url,
        retry_after=retry_after(response.headers, time.time()),
        code=report.code,
        type=report.type,
        body=shorten(content.decode("utf-8", "replace"), redact=redact),
    )


async def _json_instead_of_events(model: OpenAIChatModel, response: httpx2.Response) -> ModelError:
    content = await _read_some(model, response)
    text = content.decode("utf-8", "replace")
    if b'"error"' in content:
        report = error_report(content, model._redact)
        return ModelStreamError(
            report.message,
            code=report.code,
            type=report.type,
            data=shorten(text, redact=model._redact),
        )
    return MalformedEventError(
        "expected a stream of server-sent events, got a JSON response", text, redact=model._redact
    )
