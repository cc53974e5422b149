"""`sse_response`: a stream as server-sent events, as an ASGI application (and a Starlette
response, so a Starlette or FastAPI endpoint can return it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias, TypeVar, cast

import attrs

try:
    from starlette.background import BackgroundTask
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "beluga_trio.web needs starlette: install the extra with `pip install beluga_trio[web]`",
        name=exc.name,
    ) from exc

from .._stream import Stream
from ._asgi import Receive, Scope, Send, header, lifespan
from ._pump import Outcome, check_heartbeat, stream_response

__all__ = ["DEFAULT_ERROR_MESSAGE", "SSEResponse", "last_event_id", "sse_response", "to_json"]

T = TypeVar("T")

#: What a client is told when the stream fails: nothing about the error itself.
DEFAULT_ERROR_MESSAGE: Final = "the stream failed on the server"

ErrorMessage: TypeAlias = str | Callable[[Exception], str]
Source: TypeAlias = "Stream[Any] | Callable[[str | None], Stream[Any]]"

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _default(obj: object) -> object:
    cls = type(obj)
    if attrs.has(cls):
        # Nested attrs objects come back here.
        return {field.name: getattr(obj, field.name) for field in attrs.fields(cls)}
    if isinstance(obj, Mapping):
        return dict(cast("Mapping[str, Any]", obj))
    if isinstance(obj, BaseException):
        return {"type": type(obj).__name__}  # never the message: it may hold a secret
    raise TypeError(
        f"an item of type {type(obj).__name__} cannot be encoded as JSON; "
        "pass sse_response(..., encoder=...) to encode it"
    )


# Built once: json.dumps with any non-default option builds an encoder per call.
_ENCODER: Final = json.JSONEncoder(default=_default, separators=(",", ":"), ensure_ascii=False)


def to_json(item: object) -> str:
    """The default encoder: ``item`` as compact JSON. attrs classes (`StreamChunk`,
    `Event`...) become objects of their fields, mappings objects, tuples lists, exceptions
    ``{"type": name}`` (never their message); other types raise `TypeError`."""
    return _ENCODER.encode(item)


def last_event_id(scope: Scope) -> str | None:
    """The ``Last-Event-ID`` header of an ASGI request (a reconnecting ``EventSource`` sends
    the ``id:`` of the last event it received), or ``None``. In a Starlette endpoint it is
    ``request.headers.get("last-event-id")``."""
    return header(scope, b"last-event-id")


def _sse_event(seq: int | str, data: str) -> bytes:
    if "\n" in data or "\r" in data:
        lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
        return f"id: {seq}\n{lines}\n".encode()
    return f"id: {seq}\ndata: {data}\n\n".encode()


class SSEResponse(Response):
    """The ASGI application `sse_response` returns (a Starlette ``Response``). Call it once.

    After the call, ``outcome`` says how the response ended (``"end"``, ``"error"`` or
    ``"disconnect"``) and ``events`` how many events were sent.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: Source,
        *,
        encoder: Callable[[Any], str] | None = None,
        heartbeat: float | None = 15.0,
        first_id: int = 1,
        error_message: ErrorMessage = DEFAULT_ERROR_MESSAGE,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        event_id: Callable[[Any], str] | None = None,
    ) -> None:
        # No super().__init__(): there is no body to render, it is streamed.
        if not isinstance(source, Stream) and not callable(source):
            raise TypeError(
                "sse_response(source) takes a Stream, or a function of the Last-Event-ID "
                f"(str or None) that returns one; got {source!r}"
            )
        if encoder is not None and not callable(encoder):
            raise TypeError(f"encoder must be a function of an item returning str, got {encoder!r}")
        if event_id is not None and not callable(event_id):
            raise TypeError(
                f"event_id must be a function of an item returning str, got {event_id!r}"
            )
        if not isinstance(first_id, int) or isinstance(first_id, bool) or first_id < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"first_id must be an int >= 0, got {first_id!r}")
        if not isinstance(error_message, str) and not callable(error_message):
            raise TypeError(
                f"error_message must be a str or a function of the error, got {error_message!r}"
            )
        self._source = source
        self._encoder = to_json if encoder is None else encoder
        self._heartbeat = check_heartbeat(heartbeat)
        self._first_id = first_id
        self._event_id = event_id
        self._error_message = error_message
        self.status_code = status_code
        self.background = background
        self.init_headers(headers)
        self.raw_headers.extend([(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")])
        self.outcome: Outcome | None = None
        self.events = 0

    def _stream(self, scope: Scope) -> Stream[Any]:
        source = self._source
        if isinstance(source, Stream):
            return source
        stream = source(last_event_id(scope))
        if not isinstance(stream, Stream):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"the sse_response source function returned {stream!r}, not a Stream")
        return stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise TypeError(f"sse_response serves HTTP requests, not {scope['type']!r}")
        if self.outcome is not None:
            raise RuntimeError("an SSEResponse serves one request; make one per request")
        encode = self._encoder
        seq = self._first_id
        event_id = self._event_id

        def frame(item: Any) -> bytes:
            nonlocal seq
            data = _sse_event(
                seq if event_id is None else _checked_id(event_id(item)), encode(item)
            )
            seq += 1
            return data

        def error_frame(exc: Exception) -> bytes:
            message = self._error_message
            text = message if isinstance(message, str) else message(exc)
            return f"event: error\ndata: {json.dumps({'message': text})}\n\n".encode()

        self.outcome = Outcome.END  # set early: a second call raises
        self.outcome = await stream_response(
            scope,
            receive,
            send,
            self._stream(scope),
            status=self.status_code,
            headers=self.raw_headers,
            frame=frame,
            trailer=lambda: b"",
            error_frame=error_frame,
            heartbeat=self._heartbeat,
        )
        self.events = seq - self._first_id
        if self.background is not None and self.outcome is not Outcome.DISCONNECT:
            await self.background()


def _checked_id(event_id: str) -> str:
    if not isinstance(event_id, str) or _LINE_BREAK.search(event_id) or "\0" in event_id:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"an SSE event id is a str without line breaks or NUL, got {event_id!r}")
    return event_id


def sse_response(
    stream: Stream[T] | Callable[[str | None], Stream[T]],
    *,
    encoder: Callable[[T], str] | None = None,
    event_id: Callable[[T], str] | None = None,
    heartbeat: float | None = 15.0,
    first_id: int = 1,
    error_message: ErrorMessage = DEFAULT_ERROR_MESSAGE,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> SSEResponse:
    """``stream`` as server-sent events: an ASGI application for one request, which a
    Starlette or FastAPI endpoint can return.

    Each item is one event: ``id:`` its sequence number (``first_id``, ``first_id + 1``...)
    and ``data:`` the item encoded by ``encoder`` (default `to_json`: attrs classes as
    objects, a `str` as a JSON string). ``stream`` may also be a function of the request's
    ``Last-Event-ID`` (a `str`, or ``None``) returning the stream, to resume a reconnecting
    client: ``lambda last: s.skip(int(last or 0))`` with ``first_id`` to match.
    ``event_id(item)``, if given, is the ``id:`` instead (a `str` without line breaks: a
    Redis entry id, as `resumable_sse` sends).

    - The stream is opened when the response starts and pulled lock-step: the next item is
      asked for only after the previous one was handed to the server, so a slow client
      slows the stream and nothing piles up in memory.
    - **Disconnect**: when the client leaves (``http.disconnect``, or a ``send`` that
      fails), the stream's opening is left at once: every stage is stopped and every
      producer's ``finally`` has run before the application returns.
    - **Heartbeat**: after ``heartbeat`` seconds without an event, a comment line
      (``: keep-alive``) is sent; the item in flight is not disturbed (a cancelled wait
      loses nothing). ``None`` sends none.
    - **Errors**: an exception from the stream (or the encoder) ends the response with an
      ``event: error`` whose data is ``{"message": error_message}`` (a fixed text by
      default, or ``error_message(exc)``; never a traceback) and is logged with its
      traceback to the ``beluga_trio.web`` logger.
    - Cancellation from outside (the server shutting down) propagates as usual, after the
      stream was left.
    """
    return SSEResponse(
        stream,
        encoder=encoder,
        heartbeat=heartbeat,
        first_id=first_id,
        error_message=error_message,
        status_code=status_code,
        headers=headers,
        event_id=event_id,
    )
