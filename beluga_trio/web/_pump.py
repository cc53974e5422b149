"""Streaming a `Stream` as an HTTP response body, one piece per item, for as long as the
client is there.

The response is the stream's consumer: it pulls an item, sends it, and only then pulls the
next (a slow client slows the stream; nothing piles up). A task watches ``receive`` for
``http.disconnect`` and cancels the response's scope, so the stream's opening is left, which
stops every stage and runs every producer's ``finally`` before this returns.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Final, Generic, TypeVar, final

import trio

from .._stream import Stream
from ._asgi import Receive, Scope, Send

__all__ = ["HEARTBEAT", "Outcome", "check_heartbeat", "log", "stream_response"]

T = TypeVar("T")

#: The logger that records every stream that fails, with its traceback.
log: Final = logging.getLogger("beluga_trio.web")

#: An SSE comment line: clients ignore it, proxies see traffic.
HEARTBEAT: Final = b": keep-alive\n\n"

#: What a failed ``send`` raises when the client is gone, across ASGI servers.
_SEND_FAILURES: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Outcome(enum.Enum):
    """How a streamed response ended."""

    END = "end"  # the stream ended and the response was completed
    ERROR = "error"  # the stream failed; the response ended with an error event
    DISCONNECT = "disconnect"  # the client left; the stream was stopped


class _ClientGoneError(Exception):
    """A ``send`` failed: the client is gone (never leaves this module)."""


def check_heartbeat(heartbeat: float | None) -> float | None:
    if heartbeat is None:
        return None
    if not isinstance(heartbeat, int | float) or isinstance(heartbeat, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"heartbeat must be a number of seconds or None, got {heartbeat!r}")
    if not 0 < heartbeat < math.inf:
        raise ValueError(f"heartbeat must be a finite number of seconds > 0, got {heartbeat}")
    return float(heartbeat)


@final
class _Responder(Generic[T]):
    """One streamed response (see `stream_response`)."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        frame: Callable[[T], bytes],
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.status = status
        self.headers = headers
        self.frame = frame
        self.gone = False  # the client left
        self.head_sent = False
        self.sent = 0  # frames sent
        self.last_send = trio.current_time()
        self.waiting = False  # the pump waits for the next item
        self.beating = False  # a heartbeat is being sent
        self.beat_sent = trio.Event()

    async def send_head(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.head_sent = True
        try:
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
        except _SEND_FAILURES as exc:
            raise _ClientGoneError from exc

    async def send_body(self, body: bytes, more: bool = True) -> None:
        if not self.head_sent:
            await self.send_head(self.status, self.headers)
        try:
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
        except _SEND_FAILURES as exc:
            raise _ClientGoneError from exc
        self.last_send = trio.current_time()

    async def watch(self, cancel_scope: trio.CancelScope) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                cancel_scope.cancel()
                return

    async def pump(self, items: AsyncIterator[T]) -> None:
        frame = self.frame
        while True:
            self.waiting = True  # the heartbeat may send only while this waits for an item
            try:
                item = await anext(items)
            except StopAsyncIteration:
                return
            finally:
                self.waiting = False
            if self.beating:
                await self.quiet()
            data = frame(item)
            if data:
                await self.send_body(data)
                self.sent += 1

    async def quiet(self) -> None:
        """Wait until no heartbeat is being sent (ASGI sends must not overlap)."""
        self.waiting = False
        while self.beating:
            await self.beat_sent.wait()

    async def beat(self, heartbeat: float, cancel_scope: trio.CancelScope) -> None:
        """Send `HEARTBEAT` whenever nothing was sent for ``heartbeat`` seconds while the
        pump waits for an item. The pump's wait itself is never interrupted: no item in
        flight is disturbed, and no timer is set per item."""
        while True:
            await trio.sleep_until(self.last_send + heartbeat)
            if trio.current_time() < self.last_send + heartbeat:
                continue  # something was sent meanwhile
            if not self.waiting:
                # The pump is sending (a slow client): that is traffic enough.
                await trio.sleep(heartbeat)
                continue
            self.beating = True
            try:
                await self.send_body(HEARTBEAT)
            except _ClientGoneError:
                self.gone = True
                cancel_scope.cancel()
                return
            finally:
                self.beating = False
                self.beat_sent.set()
                self.beat_sent = trio.Event()

    def log_failure(self, exc: Exception, what: str) -> None:
        log.error(
            "the stream of %s %s %s",
            self.scope.get("method", ""),
            self.scope.get("path", ""),
            what,
            exc_info=exc,
        )


async def stream_response(
    scope: Scope,
    receive: Receive,
    send: Send,
    stream: Stream[T],
    *,
    status: int,
    headers: Iterable[tuple[bytes, bytes]],
    frame: Callable[[T], bytes],
    trailer: Callable[[], bytes],
    error_frame: Callable[[Exception], bytes],
    heartbeat: float | None,
    error_response: Callable[[Exception], tuple[int, bytes]] | None = None,
) -> Outcome:
    """Send the response: the head, ``frame(item)`` for each item (nothing for ``b""``),
    ``trailer()`` at the end, or ``error_frame(exc)`` if the stream fails (logged with its
    traceback to ``beluga_trio.web``); `HEARTBEAT` after ``heartbeat`` idle seconds.

    With ``error_response``, the head waits for the first frame or heartbeat, and a stream
    that fails before either gets the whole JSON response ``error_response(exc)`` (status,
    body) instead: an upstream 429 stays a 429.

    Returns when the response is complete or the client has left; either way the stream
    has been left, so its producers' ``finally`` blocks have run. Cancellation from outside
    propagates as usual. An error raised while the stream is stopped after a disconnect is
    logged, as there is no one left to tell.
    """
    responder = _Responder(scope, receive, send, status=status, headers=headers, frame=frame)
    outcome = Outcome.END
    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder.watch, nursery.cancel_scope)
        if heartbeat is not None:
            nursery.start_soon(responder.beat, heartbeat, nursery.cancel_scope)
        try:
            if error_response is None:
                await responder.send_head(status, headers)
            try:
                async with stream.open() as items:
                    await responder.pump(items)
                await responder.quiet()
                tail = trailer()
            except _ClientGoneError:
                raise
            except Exception as exc:
                if responder.gone:
                    raise
                outcome = Outcome.ERROR
                await responder.quiet()
                responder.log_failure(exc, f"failed after {responder.sent} events")
                if responder.head_sent or error_response is None:
                    tail = error_frame(exc)
                else:
                    error_status, tail = error_response(exc)
                    length = str(len(tail)).encode()
                    await responder.send_head(
                        error_status,
                        [(b"content-type", b"application/json"), (b"content-length", length)],
                    )
            await responder.send_body(tail, more=False)
        except _ClientGoneError:
            responder.gone = True
        except Exception as exc:  # noqa: BLE001 - logged: the client is gone
            # Only after a disconnect: the stream's cleanup failed while it was stopped.
            responder.log_failure(exc, "failed while it was stopped after the client left")
        nursery.cancel_scope.cancel()
    return Outcome.DISCONNECT if responder.gone else outcome
