"""The server of the "SSE server" scenario, run as its own process: hypercorn's trio worker
on 127.0.0.1 (a free port; it prints its URL) serving the same N events two ways.

- ``/beluga?n=N``: ``beluga_trio.web.sse_response`` over a ``@bt.stream`` generator of
  ``{"i": i}`` (the defaults: JSON encoding, ``id:`` lines, the disconnect watcher and the
  heartbeat task);
- ``/beluga-sync?n=N``: the same over ``bt.from_iterable(range(n)).map(...)``, a source
  read in the response's own task (no producer task, so no task switch per item);
- ``/starlette?n=N``: the hand-written reference, Starlette's ``StreamingResponse`` over a
  plain async generator of the same ``id:``/``data:`` text;
- ``/starlette-lockstep?n=N``: the floor of a lock-step producer in its own task: the same
  Starlette response, its body a hand-written `LockStep` hand-off from a task running the
  same plain generator (see `LockStep`);
- ``/cpu``: this process's CPU time so far (``time.process_time_ns()``), so that the
  benchmark measures the server's CPU per event, not the client's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Generic, TypeVar

import trio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from trio.lowlevel import Abort, RaiseCancelT, Task, current_task, reschedule, wait_task_rescheduled

import beluga_trio as bt
from beluga_trio.web import sse_response
from beluga_trio.web._asgi import Receive, Scope, Send
from beluga_trio.web._serve import interrupted, serve


@bt.stream
async def numbers(n: int) -> AsyncIterator[dict[str, int]]:  # noqa: ASYNC124 - a producer
    for i in range(n):
        yield {"i": i}


async def plain(n: int) -> AsyncGenerator[str, None]:  # noqa: ASYNC124 - the reference
    for i in range(n):
        data = json.dumps({"i": i}, separators=(",", ":"))
        yield f"id: {i + 1}\ndata: {data}\n\n"


T = TypeVar("T")


class LockStep(Generic[T]):
    """The least a lock-step hand-off from a producer task can cost, hand-written: the
    consumer's ``__anext__`` wakes the producer task, which runs the generator to its next
    ``yield``, stores the item and wakes the consumer: two task switches per item, straight
    through ``trio.lowlevel`` (no memory channel, no lock, no checkpoint of its own). Only
    what a benchmark needs: a cancelled request drops its item, errors are not handed over.
    """

    def __init__(self, items: AsyncGenerator[T, None]) -> None:
        self._items = items
        self._producer: Task | None = None  # parked, waiting for a request
        self._consumer: Task | None = None  # parked, waiting for an item
        self._requested = False
        self._item: list[T] = []  # the item handed over, if any
        self._done = False

    def __aiter__(self) -> LockStep[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        self._requested = True
        producer, self._producer = self._producer, None
        if producer is not None:
            reschedule(producer)
        self._consumer = current_task()
        await wait_task_rescheduled(self._abort_consumer)
        if self._done:
            raise StopAsyncIteration
        return self._item.pop()

    def _abort_consumer(self, _: RaiseCancelT) -> Abort:
        self._consumer = None
        return Abort.SUCCEEDED

    def _abort_producer(self, _: RaiseCancelT) -> Abort:
        self._producer = None
        return Abort.SUCCEEDED

    async def run(self) -> None:
        try:
            while True:
                if not self._requested:
                    self._producer = current_task()
                    await wait_task_rescheduled(self._abort_producer)
                self._requested = False
                try:
                    self._item.append(await anext(self._items))
                except StopAsyncIteration:
                    self._done = True
                    return
                finally:
                    consumer, self._consumer = self._consumer, None
                    if consumer is not None:
                        reschedule(consumer)
        finally:
            await self._items.aclose()


def _n(scope: Scope) -> int:
    return int(scope["query_string"].decode().partition("=")[2])


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await sse_response(bt.from_iterable(list[int]()))(scope, receive, send)
        return
    path = scope["path"]
    if path == "/beluga":
        await sse_response(numbers(_n(scope)))(scope, receive, send)
    elif path == "/beluga-sync":
        items = bt.from_iterable(range(_n(scope))).map(lambda i: {"i": i})
        await sse_response(items)(scope, receive, send)
    elif path == "/starlette":
        request = Request(scope, receive)
        response = StreamingResponse(plain(_n(request.scope)), media_type="text/event-stream")
        await response(scope, receive, send)
    elif path == "/starlette-lockstep":
        async with trio.open_nursery() as nursery:
            lockstep = LockStep(plain(_n(scope)))
            nursery.start_soon(lockstep.run)
            await StreamingResponse(lockstep, media_type="text/event-stream")(scope, receive, send)
            nursery.cancel_scope.cancel()
    else:
        body = str(time.process_time_ns()).encode()
        length = str(len(body)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    def ready(url: str) -> None:
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()

    trio.run(lambda: serve(app, port=0, ready=ready, shutdown_trigger=interrupted))


if __name__ == "__main__":
    main()
