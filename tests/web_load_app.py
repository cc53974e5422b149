"""A server for the load tests, run as a subprocess (``python tests/web_load_app.py``) so its
memory is its own: hypercorn's trio worker on 127.0.0.1 (a free port), printing its URL.

- ``/events?n=N``: N events, ids 1..N, data ``{"i": i, "pad": ...}`` (50 bytes);
- ``/flood``: endless 1 KiB events, as fast as the client takes them;
- ``/idle``: an event stream that never sends anything;
- ``/stats``: the server's RSS (bytes), events produced by ``/flood``, open streams.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

import beluga_trio as bt
from beluga_trio.web import sse_response
from beluga_trio.web._asgi import Receive, Scope, Send
from beluga_trio.web._serve import interrupted, serve

STATS = {"flood_produced": 0, "open": 0}


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@bt.stream
async def numbers(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        await trio.sleep(0.005)
        yield {"i": i, "pad": "x" * 30}


@bt.stream
async def flood() -> AsyncIterator[str]:  # noqa: ASYNC124 - a producer
    STATS["open"] += 1
    try:
        block = "y" * 1000
        while True:
            STATS["flood_produced"] += 1
            yield block
    finally:
        STATS["open"] -= 1


@bt.stream
async def idle() -> AsyncIterator[str]:
    STATS["open"] += 1
    try:
        await trio.sleep_forever()
        yield ""  # never reached
    finally:
        STATS["open"] -= 1


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await sse_response(bt.from_iterable(list[int]()))(scope, receive, send)
        return
    path = scope["path"]
    if path == "/events":
        n = int(scope["query_string"].decode().partition("=")[2] or 20)
        await sse_response(numbers(n), heartbeat=None)(scope, receive, send)
    elif path == "/flood":
        await sse_response(flood(), heartbeat=None)(scope, receive, send)
    elif path == "/idle":
        await sse_response(idle(), heartbeat=None)(scope, receive, send)
    else:
        body = json.dumps({"rss": rss(), **STATS}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    def ready(url: str) -> None:
        sys.stdout.write(f"serving {url}\n")
        sys.stdout.flush()

    trio.run(lambda: serve(app, port=0, ready=ready, shutdown_trigger=interrupted))


if __name__ == "__main__":
    main()
