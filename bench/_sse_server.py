"""The server of the "SSE server" scenario, run as its own process: hypercorn's trio worker
on 127.0.0.1 (a free port; it prints its URL) serving the same N events two ways.

- ``/beluga?n=N``: ``beluga_trio.web.sse_response`` over a ``@bt.stream`` generator of
  ``{"i": i}`` (the defaults: JSON encoding, ``id:`` lines, the disconnect watcher and the
  heartbeat task);
- ``/beluga-sync?n=N``: the same over ``bt.from_iterable(range(n)).map(...)``, a source
  read in the response's own task (no producer task, so no task switch per item);
- ``/starlette?n=N``: the hand-written reference, Starlette's ``StreamingResponse`` over a
  plain async generator of the same ``id:``/``data:`` text;
- ``/cpu``: this process's CPU time so far (``time.process_time_ns()``), so that the
  benchmark measures the server's CPU per event, not the client's.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator

import trio
from starlette.requests import Request
from starlette.responses import StreamingResponse

import beluga_trio as bt
from beluga_trio.web import sse_response
from beluga_trio.web._asgi import Receive, Scope, Send
from beluga_trio.web._serve import interrupted, serve


@bt.stream
async def numbers(n: int) -> AsyncIterator[dict[str, int]]:  # noqa: ASYNC124 - a producer
    for i in range(n):
        yield {"i": i}


async def plain(n: int) -> AsyncIterator[str]:  # noqa: ASYNC124 - the reference
    for i in range(n):
        data = json.dumps({"i": i}, separators=(",", ":"))
        yield f"id: {i + 1}\ndata: {data}\n\n"


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
