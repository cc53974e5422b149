"""A stream served as server-sent events from a Starlette endpoint, resumable by the
``Last-Event-ID`` a reconnecting client sends (``pip install beluga_trio[web]``)."""

import functools

import httpx2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import beluga_trio as bt
from beluga_trio.web import SSEResponse, serve, sse_response

WORDS = ["cold", "typed", "scoped"]


async def events(request: Request) -> SSEResponse:  # noqa: ASYNC124 - an endpoint
    # A reconnecting EventSource sends the id of the last event it got: go on from there.
    seen = int(request.headers.get("last-event-id", "0"))
    return sse_response(bt.from_iterable(WORDS).skip(seen), first_id=seen + 1)


app = Starlette(routes=[Route("/events", events)])


async def main() -> None:
    async with trio.open_nursery() as nursery:
        # hypercorn's trio worker on 127.0.0.1, any free port.
        url = await nursery.start(functools.partial(serve, app, port=0))
        async with httpx2.AsyncClient() as client:
            print((await client.get(url + "/events")).text, end="")
            resumed = await client.get(url + "/events", headers={"last-event-id": "2"})
            print(resumed.text, end="")
        nursery.cancel_scope.cancel()
