"""`resumable_sse`: a stream published to Redis, served as server-sent events by any process,
resuming a reconnecting client right after the last event it received (``Last-Event-ID``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, final

from .._sources import from_iterable
from .._stream import Stream
from ._asgi import Receive, Scope, Send, json_response, lifespan
from ._pump import Outcome
from ._sse import DEFAULT_ERROR_MESSAGE, last_event_id, sse_response, to_json

if TYPE_CHECKING:
    import coredis

    from ..redis import Codec

__all__ = ["ResumableSSE", "resumable_sse"]

_NOT_FOUND: Final = "not_found"


class _RefusedError(Exception):
    """The request cannot be served: answered with ``status`` and a JSON error body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@final
class ResumableSSE:
    """The ASGI application `resumable_sse` returns, for one request. Call it once.

    After the call, ``status`` is the HTTP status sent (200, or the 4xx/503 of a refused
    request), ``outcome`` how a served stream ended (``None`` if refused) and ``events`` how
    many events were sent.
    """

    def __init__(
        self,
        client: coredis.Redis[Any],
        key: str,
        *,
        encoder: Callable[[Any], str],
        codec: Codec | None,
        heartbeat: float | None,
        error_message: str | Callable[[Exception], str],
        headers: Mapping[str, str] | None,
        block: float,
    ) -> None:
        from ..redis import JSON  # noqa: PLC0415 - the redis extra, imported on use

        self._client = client
        self._key = key
        self._codec = JSON if codec is None else codec
        self._block = block
        self._response_options: dict[str, Any] = {
            "encoder": _item_encoder(encoder),
            "event_id": _entry_id,
            "heartbeat": heartbeat,
            "error_message": error_message,
            "headers": headers,
        }
        # Checked now (by making a response that is never called), not in mid-request.
        sse_response(from_iterable(()), **self._response_options)
        self.status: int | None = None
        self.outcome: Outcome | None = None
        self.events = 0

    async def _subscription(self, last: str | None) -> Stream[tuple[str, Any]]:
        """The stream to serve after ``last`` (the request's ``Last-Event-ID``), checked
        before anything is sent; raises `_RefusedError` when it cannot be served."""
        from coredis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

        from .. import redis  # noqa: PLC0415 - the redis extra, imported on use

        client, key = self._client, self._key
        if last is not None:
            last = last.strip()
            if not redis.is_entry_id(last):
                raise _RefusedError(
                    400,
                    "invalid_last_event_id",
                    f"Last-Event-ID must be the id of an event of this stream (a Redis entry "
                    f"id such as '1700000000000-0'), got {last!r}",
                )
        try:
            if last is None:
                if not await client.exists([key]):
                    raise _RefusedError(
                        404, _NOT_FOUND, f"no stream {key!r}: it never started, or it has expired"
                    )
            else:
                await redis.check_entry(client, key, last)
        except redis.EntryNotFoundError as exc:
            status, kind = {
                "no-stream": (404, _NOT_FOUND),
                "trimmed": (410, "events_gone"),
            }.get(exc.reason, (400, "invalid_last_event_id"))
            raise _RefusedError(status, kind, f"Last-Event-ID {last}: {exc}") from exc
        except (redis.ConnectionLostError, RedisConnectionError, OSError) as exc:
            raise _RefusedError(
                503, "unavailable", "the stream store (Redis) is unreachable"
            ) from exc
        return redis.subscribe(client, key, after=last, codec=self._codec, block=self._block)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise TypeError(f"resumable_sse serves HTTP requests, not {scope['type']!r}")
        if self.status is not None:
            raise RuntimeError("a ResumableSSE serves one request; make one per request")
        self.status = 200  # set early: a second call raises
        try:
            stream = await self._subscription(last_event_id(scope))
        except _RefusedError as refused:
            self.status = refused.status
            body = {"error": {"message": refused.message, "type": refused.kind}}
            await json_response(send, refused.status, body)
            return
        response = sse_response(stream, **self._response_options)
        await response(scope, receive, send)
        self.outcome = response.outcome
        self.events = response.events


def _entry_id(pair: tuple[str, Any]) -> str:
    return pair[0]


def _item_encoder(encode: Callable[[Any], str]) -> Callable[[tuple[str, Any]], str]:
    def encode_item(pair: tuple[str, Any]) -> str:
        return encode(pair[1])

    return encode_item


def resumable_sse(
    client: coredis.Redis[Any],
    key: str,
    *,
    encoder: Callable[[Any], str] | None = None,
    codec: Codec | None = None,
    heartbeat: float | None = 15.0,
    error_message: str | Callable[[Exception], str] = DEFAULT_ERROR_MESSAGE,
    headers: Mapping[str, str] | None = None,
    block: float = 10.0,
) -> ResumableSSE:
    """The Redis stream ``key`` (written by `beluga_trio.redis.publish`) as server-sent
    events, resuming a reconnecting client: an ASGI application for one request, which a
    Starlette or FastAPI endpoint can return. Needs the ``redis`` extra.

    Each item is one event whose ``id:`` is its Redis entry id and whose ``data:`` is the
    item encoded by ``encoder`` (default `to_json`); ``codec`` decodes entries as `publish`
    encoded them (JSON by default). Any process with a connection to the same Redis serves
    the same events, so a client may reconnect to any of them:

    - **Resuming.** A request without ``Last-Event-ID`` gets every event from the first;
      with ``Last-Event-ID`` (a browser's ``EventSource`` sends the last ``id:`` it received
      when it reconnects), the events right after that one: no gap, no duplicate.
    - **Refusals, before anything is streamed**, as a JSON error body
      ``{"error": {"message", "type"}}`` naming the problem: 400 for a ``Last-Event-ID``
      that is not an event of this stream, 404 when the key does not exist (never started,
      or expired), 410 when the events after ``Last-Event-ID`` were trimmed (``maxlen``),
      503 when Redis cannot be reached. Never a silent restart from the beginning.
    - **Disconnect** stops this response's subscription only (its ``XREAD`` is dropped at
      once): the publisher, wherever it runs, and every other reader go on. The stream
      itself stops when it ends or when its publisher's owner stops it (then its error
      entry ends every reader).
    - **End and errors** as `sse_response`: the response ends after the terminal entry;
      a stream that failed (`~beluga_trio.redis.RemoteStreamError`) or a lost connection to
      Redis ends it with an ``event: error`` carrying ``error_message``, never a clean end.
    """
    if not isinstance(key, str) or not key:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"resumable_sse() needs a non-empty str key, got {key!r}")
    if encoder is not None and not callable(encoder):
        raise TypeError(f"encoder must be a function of an item returning str, got {encoder!r}")
    if not block > 0:
        raise ValueError(f"resumable_sse() needs block > 0 seconds, got {block!r}")
    return ResumableSSE(
        client,
        key,
        encoder=to_json if encoder is None else encoder,
        codec=codec,
        heartbeat=heartbeat,
        error_message=error_message,
        headers=headers,
        block=block,
    )
