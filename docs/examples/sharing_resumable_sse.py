"""Resumable server-sent events behind a load balancer: two servers share one Redis. A reply is
started once on server A and published; a client reads it through server B, loses its
connection, reconnects to server A with ``Last-Event-ID`` and gets the rest
(``pip install 'beluga_trio[web,redis,http]'``: httpx2 is the client)."""

import functools
import json
import os
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import coredis
import httpx2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from beluga_trio.llm import ScriptedModel, split_words
from beluga_trio.redis import publish
from beluga_trio.web import ResumableSSE, resumable_sse, serve

PORT = int(os.environ.get("BELUGA_TRIO_REDIS_PORT", "6379"))
model = ScriptedModel(split_words("One reply, read through two servers, no gap."), delay=0.05)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncGenerator[None]:
    # Each server process: a Redis client, and a nursery for the replies it runs. A reply
    # belongs to the server, not to the request that started it: it outlives its client.
    async with coredis.Redis(host="127.0.0.1", port=PORT) as redis, trio.open_nursery() as replies:
        app.state.redis, app.state.replies = redis, replies
        yield
        replies.cancel_scope.cancel()  # shutting down: the replies still running stop


async def start_reply(request: Request) -> JSONResponse:
    prompt = (await request.json())["prompt"]
    reply_id = uuid.uuid4().hex
    text = model.stream(prompt).map(lambda chunk: chunk.delta).filter(bool)
    key = f"reply:{reply_id}"
    run = functools.partial(publish, text, request.app.state.redis, key, maxlen=10_000, expire=600)
    await request.app.state.replies.start(run)  # returns once the key exists in Redis
    return JSONResponse({"id": reply_id}, status_code=201)


async def reply_events(request: Request) -> ResumableSSE:  # noqa: ASYNC124 - an endpoint
    # Any server: from the first event, or right after the request's Last-Event-ID.
    return resumable_sse(request.app.state.redis, f"reply:{request.path_params['id']}")


def make_server() -> Starlette:
    routes = [
        Route("/replies", start_reply, methods=["POST"]),
        Route("/replies/{id}/events", reply_events),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def read_events(
    client: httpx2.AsyncClient, url: str, last_event_id: str | None = None, keep: int = 0
) -> list[tuple[str, str]]:
    """The (id, text) of each event at ``url``; after ``keep`` events the connection drops.
    (A browser's `EventSource` reconnects with `Last-Event-ID` by itself.)"""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    received: list[tuple[str, str]] = []
    buffer = b""
    with trio.CancelScope() as connection:
        async with client.stream("GET", url, headers=headers) as response:
            async for chunk in response.aiter_raw():
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")  # an event ends with a blank line
                for event in events:
                    fields = dict(line.split(": ", 1) for line in event.decode().split("\n"))
                    if not connection.cancel_called:
                        received.append((fields["id"], json.loads(fields["data"])))
                if keep and len(received) >= keep:
                    connection.cancel()  # the phone goes into a tunnel: the connection drops
    return received


async def main() -> None:
    async with trio.open_nursery() as nursery, httpx2.AsyncClient() as client:
        a = await nursery.start(functools.partial(serve, make_server(), port=0))
        b = await nursery.start(functools.partial(serve, make_server(), port=0))

        started = await client.post(a + "/replies", json={"prompt": "Hi"})
        events = f"/replies/{started.json()['id']}/events"

        before = await read_events(client, b + events, keep=3)
        print("through B, then the connection drops:", [text for _, text in before])
        after = await read_events(client, a + events, last_event_id=before[-1][0])
        print("through A, from Last-Event-ID:", [text for _, text in after])
        print("the whole reply:", "".join(text for _, text in before + after))

        refused = await client.get(b + events, headers={"Last-Event-ID": "1-0"})
        print(refused.status_code, refused.json()["error"]["type"])
        nursery.cancel_scope.cancel()
    print(f"the model was called {len(model.calls)} time")
