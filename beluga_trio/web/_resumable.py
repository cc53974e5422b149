"""`resumable_sse`: a shared stream served as server-sent events that resume a reconnecting
client right after the last event it received (``Last-Event-ID``): a stream published to
Redis, served by any process, or a `~beluga_trio.share` within this one."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, final, overload

import trio

from .._share import MissedItemsError, Shared
from .._sources import from_iterable
from .._stream import Stream
from ._asgi import Receive, Scope, Send, json_response, lifespan
from ._pump import Outcome
from ._sse import DEFAULT_ERROR_MESSAGE, last_event_id, sse_response, to_json

if TYPE_CHECKING:
    import coredis

    from ..redis import Codec

__all__ = ["ResumableSSE", "resumable_sse"]

_BAD_ID: Final = "invalid_last_event_id"
_SEQ: Final = re.compile(r"\A\d{1,18}\Z")

#: Finds the stream to serve after a ``Last-Event-ID`` (or ``None``): ``(id, item)`` pairs.
_Locate = Callable[[str | None], Awaitable[Stream[tuple[str, Any]]]]


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

    def __init__(self, locate: _Locate, options: dict[str, Any]) -> None:
        self._locate = locate
        self._options = options
        self.status: int | None = None
        self.outcome: Outcome | None = None
        self.events = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise TypeError(f"resumable_sse serves HTTP requests, not {scope['type']!r}")
        if self.status is not None:
            raise RuntimeError("a ResumableSSE serves one request; make one per request")
        self.status = 200  # set early: a second call raises
        last = last_event_id(scope)
        try:
            stream = await self._locate(None if last is None else last.strip())
        except _RefusedError as refused:
            self.status = refused.status
            body = {"error": {"message": refused.message, "type": refused.kind}}
            await json_response(send, refused.status, body)
            return
        response = sse_response(stream, **self._options)
        await response(scope, receive, send)
        self.outcome = response.outcome
        self.events = response.events


def _entry_id(pair: tuple[str, Any]) -> str:
    return pair[0]


def _item_encoder(encode: Callable[[Any], str]) -> Callable[[tuple[str, Any]], str]:
    def encode_item(pair: tuple[str, Any]) -> str:
        return encode(pair[1])

    return encode_item


def _redis_locator(client: coredis.Redis[Any], key: str, codec: Codec, block: float) -> _Locate:
    async def locate(last: str | None) -> Stream[tuple[str, Any]]:
        from coredis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

        from .. import redis  # noqa: PLC0415 - the redis extra, imported on use

        if last is not None and not redis.is_entry_id(last):
            raise _RefusedError(
                400,
                _BAD_ID,
                f"Last-Event-ID must be the id of an event of this stream (a Redis entry "
                f"id such as '1700000000000-0'), got {last!r}",
            )
        try:
            if last is None:
                if not await client.exists([key]):
                    raise _RefusedError(
                        404, "not_found", f"no stream {key!r}: it never started, or it has expired"
                    )
            else:
                await redis.check_entry(client, key, last)
        except redis.EntryNotFoundError as exc:
            status, kind = {"no-stream": (404, "not_found"), "trimmed": (410, "events_gone")}.get(
                exc.reason, (400, _BAD_ID)
            )
            raise _RefusedError(status, kind, f"Last-Event-ID {last}: {exc}") from exc
        except (redis.ConnectionLostError, RedisConnectionError, OSError) as exc:
            raise _RefusedError(
                503, "unavailable", "the stream store (Redis) is unreachable"
            ) from exc
        return redis.subscribe(client, key, after=last, codec=codec, block=block)

    return locate


def _share_locator(shared: Shared[Any]) -> _Locate:
    def numbered(pair: tuple[int, Any]) -> tuple[str, Any]:
        return (str(pair[0]), pair[1])

    async def locate(last: str | None) -> Stream[tuple[str, Any]]:
        await trio.lowlevel.checkpoint()
        if last is not None and not _SEQ.match(last):
            raise _RefusedError(
                400,
                _BAD_ID,
                f"Last-Event-ID must be the id of an event of this stream (its sequence "
                f"number, such as '41'), got {last!r}",
            )
        after = None if last is None else int(last)
        try:
            shared.check(after)
        except trio.ClosedResourceError as exc:
            raise _RefusedError(404, "not_found", "the shared stream has stopped") from exc
        except MissedItemsError as exc:
            raise _RefusedError(410, "events_gone", f"Last-Event-ID {last}: {exc}") from exc
        except ValueError as exc:
            raise _RefusedError(400, _BAD_ID, f"Last-Event-ID {last}: {exc}") from exc
        return shared.subscribe(after=after).map(numbered)

    return locate


@overload
def resumable_sse(
    source: Shared[Any],
    key: None = None,
    *,
    encoder: Callable[[Any], str] | None = None,
    heartbeat: float | None = 15.0,
    error_message: str | Callable[[Exception], str] = DEFAULT_ERROR_MESSAGE,
    headers: Mapping[str, str] | None = None,
) -> ResumableSSE: ...


@overload
def resumable_sse(
    source: coredis.Redis[Any],
    key: str,
    *,
    encoder: Callable[[Any], str] | None = None,
    codec: Codec | None = None,
    heartbeat: float | None = 15.0,
    error_message: str | Callable[[Exception], str] = DEFAULT_ERROR_MESSAGE,
    headers: Mapping[str, str] | None = None,
    block: float = 10.0,
) -> ResumableSSE: ...


def resumable_sse(
    source: Shared[Any] | coredis.Redis[Any],
    key: str | None = None,
    *,
    encoder: Callable[[Any], str] | None = None,
    codec: Codec | None = None,
    heartbeat: float | None = 15.0,
    error_message: str | Callable[[Exception], str] = DEFAULT_ERROR_MESSAGE,
    headers: Mapping[str, str] | None = None,
    block: float = 10.0,
) -> ResumableSSE:
    """A shared stream as server-sent events that resume a reconnecting client: an ASGI
    application for one request, which a Starlette or FastAPI endpoint can return.

    ``resumable_sse(redis, key)`` serves the Redis stream ``key`` written by
    `beluga_trio.redis.publish` (the ``redis`` extra; ``codec`` decodes entries as `publish`
    encoded them, JSON by default), and the ``id:`` of each event is its Redis entry id. Any
    process with a connection to the same Redis serves the same events, so a client may
    reconnect to any of them. ``resumable_sse(shared)`` serves a `~beluga_trio.share` of this
    process, and the ``id:`` is the item's ``seq``. The ``data:`` is the item encoded by
    ``encoder`` (default `to_json`).

    - **Resuming.** A request without ``Last-Event-ID`` gets every event from the first (for
      a share: its replay, then live); with ``Last-Event-ID`` (a browser's ``EventSource``
      sends the last ``id:`` it received when it reconnects), the events right after that
      one: no gap, no duplicate.
    - **Refusals, before anything is streamed**, as a JSON error body
      ``{"error": {"message", "type"}}`` naming the problem: 400 for a ``Last-Event-ID`` that
      is not an event of this stream, 404 when the stream does not exist (never started,
      expired, or the share has stopped), 410 when the events after ``Last-Event-ID`` are gone
      (trimmed by ``maxlen``, or out of the share's replay window), 503 when Redis cannot be
      reached. Never a silent restart from the beginning.
    - **Disconnect** stops this response's subscription only (a Redis ``XREAD`` is dropped at
      once): the producer, wherever it runs, and every other reader go on. The stream stops
      when it ends or when its owner stops it (the publisher's task, the share's block).
    - **End and errors** as `sse_response`: the response ends after the last event; a stream
      that failed (for Redis, `~beluga_trio.redis.RemoteStreamError`), a lost connection to
      Redis or a share that stopped early ends it with an ``event: error`` carrying
      ``error_message``, never a clean end.
    """
    if encoder is not None and not callable(encoder):
        raise TypeError(f"encoder must be a function of an item returning str, got {encoder!r}")
    options: dict[str, Any] = {
        "encoder": _item_encoder(to_json if encoder is None else encoder),
        "event_id": _entry_id,
        "heartbeat": heartbeat,
        "error_message": error_message,
        "headers": headers,
    }
    sse_response(from_iterable(()), **options)  # checks them now, not in mid-request
    if isinstance(source, Shared):
        if key is not None:
            raise TypeError(f"resumable_sse(shared) takes no key, got {key!r}")
        return ResumableSSE(_share_locator(source), options)
    if not isinstance(key, str) or not key:
        raise TypeError(f"resumable_sse(redis, key) needs a non-empty str key, got {key!r}")
    if not block > 0:
        raise ValueError(f"resumable_sse() needs block > 0 seconds, got {block!r}")
    from ..redis import JSON  # noqa: PLC0415 - the redis extra, imported on use

    return ResumableSSE(
        _redis_locator(source, key, JSON if codec is None else codec, block), options
    )
