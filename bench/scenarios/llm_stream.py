"""Scenario "LLM stream": one streamed chat reply of N chunks from a loopback server.

A server in a process of its own (:mod:`bench._llm_server`) streams N OpenAI-format
``chat.completion.chunk`` events, each written to the socket on its own; every contender
sends the request, reads every event, decodes each chunk's JSON and joins the text deltas.
The result is the whole text, so no contender can skip a chunk.

- the reference is a hand-written loop: an httpx2 client and httpx-sse's event decoder,
  ``json.loads`` of each event and the text delta picked out of it;
- beluga: `OpenAIChatModel(...).stream(...).collect()` and ``open()`` + ``async for``;
- the official ``openai`` SDK (``AsyncOpenAI``), under trio (it runs on anyio).

Each measurement is a fresh ``trio.run``, so each contender makes its HTTP client (one
connection) inside the job. Loading the CA certificates for a client's SSL context takes tens
of milliseconds, as much as thousands of chunks: every contender is given one context built
once per process (beluga builds and shares its own the same way), so that the figures are
the stream's cost, not the client's.
"""

from __future__ import annotations

import atexit
import functools
import json
import ssl
import subprocess
import sys
from typing import Any, cast

import httpx2
import openai
from httpx_sse import EventSource

from beluga_trio.llm.openai import OpenAIChatModel
from bench._harness import Contender, Job, Scenario

_server: subprocess.Popen[str] | None = None
_url = ""


def server_url() -> str:
    """The API root of the loopback server, started on first use (stopped at exit)."""
    global _server, _url  # noqa: PLW0603 - one server per benchmark process
    if _server is None:
        _server = subprocess.Popen(
            [sys.executable, "-m", "bench._llm_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert _server.stdout is not None
        line = _server.stdout.readline()
        if not line.startswith("PORT "):
            _server.kill()
            raise RuntimeError(f"the loopback LLM server did not start: {line!r}")
        _url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        atexit.register(_stop)
    return _url


def _stop() -> None:
    if _server is not None:
        assert _server.stdin is not None
        _server.stdin.close()
        _server.wait(timeout=10)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


def expected(n: int) -> str:
    return "".join(f"t{i} " for i in range(n))


def _model(n: int) -> str:
    return f"chunks-{n}"


PROMPT = [{"role": "user", "content": "count"}]


def load_handwritten() -> Job:
    url = server_url() + "/chat/completions"

    async def job(n: int) -> str:
        body = {"model": _model(n), "messages": PROMPT, "stream": True}
        parts: list[str] = []
        async with (
            httpx2.AsyncClient(verify=ssl_context()) as client,
            client.stream("POST", url, json=body) as response,
        ):
            response.raise_for_status()
            # httpx-sse types its argument as an httpx.Response; an httpx2 one has the same API.
            source = EventSource(cast(Any, response))
            async for event in source.aiter_sse():
                if event.data == "[DONE]":
                    break
                chunk = json.loads(event.data)
                for choice in chunk["choices"]:
                    content = choice["delta"].get("content")
                    if content:
                        parts.append(content)
        return "".join(parts)

    return job


def load_beluga_collect() -> Job:
    url = server_url()

    async def job(n: int) -> str:
        async with OpenAIChatModel(_model(n), base_url=url, api_key="") as model:
            chunks = await model.stream("count").collect()
        return "".join(c.delta for c in chunks)

    return job


def load_beluga_open() -> Job:
    url = server_url()

    async def job(n: int) -> str:
        parts: list[str] = []
        async with (
            OpenAIChatModel(_model(n), base_url=url, api_key="") as model,
            model.stream("count").open() as chunks,
        ):
            parts.extend([chunk.delta async for chunk in chunks])
        return "".join(parts)

    return job


def load_openai_sdk() -> Job:
    url = server_url()

    async def job(n: int) -> str:
        parts: list[str] = []
        http_client = openai.DefaultAsyncHttpxClient(verify=ssl_context())
        async with openai.AsyncOpenAI(
            base_url=url, api_key="unused", max_retries=0, http_client=http_client
        ) as client:
            reply = await client.chat.completions.create(
                model=_model(n),
                messages=[{"role": "user", "content": "count"}],
                stream=True,
            )
            async for chunk in reply:
                parts.extend(choice.delta.content or "" for choice in chunk.choices)
        return "".join(parts)

    return job


REFERENCE = "hand-written httpx2 + httpx-sse + json.loads"

SCENARIO = Scenario(
    name="LLM stream",
    description=(
        "one streamed chat reply of N OpenAI-format chunks from a loopback server (another"
        " process, one write per event); each contender decodes every chunk and joins the"
        " text; reference: a hand-written httpx2 + httpx-sse loop with json.loads per chunk"
    ),
    items=20_000,
    smoke_items=200,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_handwritten),
        Contender("beluga OpenAIChatModel .collect()", load_beluga_collect, goal=1.0),
        Contender("beluga OpenAIChatModel open() + async for", load_beluga_open, goal=1.0),
        Contender("openai SDK (AsyncOpenAI) under trio", load_openai_sdk, note="peer, on trio"),
    ),
    expected=expected,
)
