"""`sse_response`: framing, lock-step pulling, disconnects, heartbeats, errors and
Last-Event-ID, driven in memory through the ASGI interface (virtual clock), and in
Starlette, FastAPI and raw ASGI behind a real hypercorn server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, MutableMapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from web_client import request
from web_server import running_app

import beluga_trio as bt
from beluga_trio.schema import StreamChunk, Usage
from beluga_trio.testing import ScriptedProducer, no_leaks
from beluga_trio.web import HEARTBEAT, Outcome, SSEResponse, last_event_id, sse_response, to_json

Message = MutableMapping[str, Any]


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/events", "headers": headers or []}


class Client:
    """An in-memory ASGI client: what the app sent, and a way to leave."""

    def __init__(self, *, send_gate: trio.Event | None = None) -> None:
        self.messages: list[Message] = []
        self._to_app, self._from_client = trio.open_memory_channel[Message](10)
        self._to_app.send_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.send_gate = send_gate  # when set, each send waits for it (a slow client)
        self.fail_sends = False
        self.body_sent = trio.Event()

    async def receive(self) -> Message:
        return await self._from_client.receive()

    async def send(self, message: Message) -> None:
        if self.fail_sends:
            raise OSError("connection reset by peer")
        if self.send_gate is not None and message["type"] == "http.response.body":
            await self.send_gate.wait()
        self.messages.append(message)
        if message["type"] == "http.response.body":
            self.body_sent.set()

    def disconnect(self) -> None:
        self._to_app.send_nowait({"type": "http.disconnect"})

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self.messages if m["type"] == "http.response.body")

    def events(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for block in self.body.decode().split("\n\n"):
            if not block:
                continue
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                key, _, value = line.partition(": ")
                fields[key] = f"{fields[key]}\n{value}" if key in fields else value
            out.append(fields)
        return out


async def run(app: SSEResponse, client: Client, scope: dict[str, Any] | None = None) -> None:
    await app(scope or http_scope(), client.receive, client.send)


@attrs.frozen
class Point:
    x: int
    label: str


async def test_each_item_is_one_event_with_an_id_and_json_data(
    autojump_clock: trio.testing.MockClock,
) -> None:
    items: list[object] = ["tok", Point(1, "a"), StreamChunk("hi", usage=Usage(1, 2)), {"k": [1]}]
    client = Client()
    app = sse_response(bt.from_iterable(items))
    await run(app, client)
    start = client.messages[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache"
    assert client.events() == [
        {"id": "1", "data": '"tok"'},
        {"id": "2", "data": '{"x":1,"label":"a"}'},
        {
            "id": "3",
            "data": '{"delta":"hi","tool_calls":[],"finish_reason":null,"usage":'
            '{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,'
            '"cached_tokens":0,"reasoning_tokens":0},'
            '"reasoning_delta":"","model_id":"","refusal":""}',
        },
        {"id": "4", "data": '{"k":[1]}'},
    ]
    assert client.messages[-1]["more_body"] is False
    assert (app.outcome, app.events) == (Outcome.END, 4)


async def test_a_custom_encoder_and_multi_line_data(autojump_clock: trio.testing.MockClock) -> None:
    client = Client()
    await run(sse_response(bt.from_iterable(["a\nb", "c"]), encoder=str.upper, first_id=7), client)
    assert client.body == b"id: 7\ndata: A\ndata: B\n\nid: 8\ndata: C\n\n"


def test_to_json() -> None:
    assert to_json(bt.Event(bt.EventType.DATA, "x")) == (
        '{"type":"data","payload":"x","error":null,"meta":{}}'
    )
    secret = ValueError("sk-secret")
    assert "sk-secret" not in to_json(bt.Event(bt.EventType.ERROR, None, error=secret))
    with pytest.raises(TypeError, match="cannot be encoded as JSON; pass sse_response"):
        to_json(object())


async def test_the_next_item_is_pulled_only_after_the_previous_was_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = ScriptedProducer.counting(100)
    gate = trio.Event()
    client = Client(send_gate=gate)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, sse_response(probe.stream(), heartbeat=None), client)
        await trio.sleep(5)
        # The first item is being sent (the client does not read): nothing more was asked.
        assert probe.started == 1
        gate.set()
    assert probe.started == 100
    assert [e["id"] for e in client.events()] == [str(i) for i in range(1, 101)]


@pytest.mark.parametrize("how", ["http.disconnect", "failed send"])
async def test_a_client_that_leaves_stops_the_stream(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    probe = ScriptedProducer.counting(delay=1.0)
    client = Client()
    app = sse_response(probe.stream())
    with no_leaks():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, app, client)
            await trio.sleep(3.5)
            if how == "http.disconnect":
                client.disconnect()
            else:
                # Found out at the next send (servers that never say http.disconnect).
                client.fail_sends = True
                await trio.sleep(1.0)
            await trio.testing.wait_all_tasks_blocked()
            # Stopped at once: the producer's finally has run and the app has returned.
            assert probe.cleanups == 1
            assert app.outcome is Outcome.DISCONNECT
    assert probe.started <= 5
    assert client.messages[-1]["more_body"] is True  # no clean end was sent


async def test_heartbeats_do_not_disturb_the_item_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[int] = []

    def square(i: int) -> int:
        calls.append(i)
        return i * i

    probe = ScriptedProducer.counting(4, delay=2.5)
    client = Client()
    # Items every 2.5 s, a heartbeat after 1 s idle: two heartbeats during each item.
    await run(sse_response(probe.stream().map(square), heartbeat=1.0), client)
    assert calls == [0, 1, 2, 3]  # each user function ran once per item
    assert probe.started == 4
    assert [e["data"] for e in client.events() if "data" in e] == ["0", "1", "4", "9"]
    beats = [e for e in client.events() if "data" not in e]
    assert len(beats) == 8
    assert client.body.count(HEARTBEAT) == 8
    assert client.body.startswith(HEARTBEAT * 2 + b"id: 1\n")


async def test_an_error_mid_stream_ends_with_a_safe_error_event_and_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    @bt.stream
    async def failing() -> AsyncIterator[str]:  # noqa: ASYNC124 - a producer
        yield "one"
        raise RuntimeError("database password is hunter2")

    client = Client()
    app = sse_response(failing())
    with caplog.at_level(logging.ERROR, logger="beluga_trio.web"):
        await run(app, client)
    assert client.events() == [
        {"id": "1", "data": '"one"'},
        {"event": "error", "data": '{"message": "the stream failed on the server"}'},
    ]
    assert b"hunter2" not in client.body
    assert b"Traceback" not in client.body
    assert client.messages[-1]["more_body"] is False
    assert app.outcome is Outcome.ERROR
    [record] = caplog.records
    assert "GET /events failed after 1 events" in record.getMessage()
    assert record.exc_info is not None
    assert "hunter2" in str(record.exc_info[1])

    client = Client()
    await run(sse_response(failing(), error_message=lambda exc: type(exc).__name__), client)
    assert client.events()[-1] == {"event": "error", "data": '{"message": "RuntimeError"}'}


async def test_last_event_id_reaches_the_endpoint_for_resumption(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[str | None] = []
    letters = bt.from_iterable("abcdef")

    def resume(last: str | None) -> bt.Stream[str]:
        seen.append(last)
        return letters.skip(int(last or 0))

    client = Client()
    await run(sse_response(resume), client, http_scope([(b"last-event-id", b"4")]))
    # The endpoint chooses the ids: here, to continue where the client was.
    assert [e["data"] for e in client.events()] == ['"e"', '"f"']
    assert last_event_id(http_scope([(b"Last-Event-ID", b"9")])) == "9"
    assert last_event_id(http_scope()) is None
    client = Client()
    await run(sse_response(resume), client)
    assert seen == ["4", None]
    assert len(client.events()) == 6


async def test_lifespan_and_other_scopes(autojump_clock: trio.testing.MockClock) -> None:
    app = sse_response(bt.from_iterable([1]))
    to_app, from_server = trio.open_memory_channel[Message](2)
    sent: list[Message] = []

    async def send(message: Message) -> None:  # noqa: ASYNC124 - ASGI's send
        sent.append(message)

    to_app.send_nowait({"type": "lifespan.startup"})
    to_app.send_nowait({"type": "lifespan.shutdown"})
    await app({"type": "lifespan"}, from_server.receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(TypeError, match="serves HTTP requests, not 'websocket'"):
        await app({"type": "websocket"}, from_server.receive, send)
    client = Client()
    await run(app, client)
    with pytest.raises(RuntimeError, match="serves one request"):
        await run(app, Client())


def test_bad_arguments_are_named() -> None:
    s = bt.from_iterable([1])
    with pytest.raises(TypeError, match=r"takes a Stream, or a function .* got \[1\]"):
        sse_response([1])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="heartbeat must be a finite number of seconds > 0"):
        sse_response(s, heartbeat=0)
    with pytest.raises(TypeError, match="heartbeat must be a number of seconds or None"):
        sse_response(s, heartbeat="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="first_id must be an int >= 0"):
        sse_response(s, first_id=-1)
    with pytest.raises(TypeError, match="encoder must be a function"):
        sse_response(s, encoder="json")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# ------------------------------------------------------------- behind a real server


class Closed:
    """When a producer's finally ran (real time)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.started = 0
        self.event = threading.Event()  # set by the server's thread

    def ticks(self, delay: float = 0.01) -> bt.Stream[dict[str, int]]:
        @bt.stream
        async def produce() -> AsyncGenerator[dict[str, int], None]:
            try:
                for i in range(100_000):
                    self.started += 1
                    await trio.sleep(delay)
                    yield {"i": i}
            finally:
                self.at = time.monotonic()
                self.event.set()

        return produce()

    async def wait(self) -> float:
        assert await trio.to_thread.run_sync(self.event.wait, 5), "the producer was not closed"
        assert self.at is not None
        return self.at


async def read_events_then_leave(url: str, n: int) -> tuple[list[str], float]:
    """Read ``n`` data lines, then close the connection; the lines and when it was closed."""
    lines: list[str] = []
    async with request(url) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        while len(lines) < n:
            line = await response.line()
            assert line is not None
            if line.startswith("data: "):
                lines.append(line)
        left = time.monotonic()
    return lines, left


def starlette_app(closed: Closed) -> Any:

    async def events(request: Request) -> SSEResponse:  # noqa: ASYNC124 - an endpoint
        last = int(request.headers.get("last-event-id", "0"))
        return sse_response(closed.ticks().skip(last), first_id=last + 1)

    return Starlette(routes=[Route("/events", events)])


def fastapi_app(closed: Closed) -> Any:

    app = FastAPI()

    @app.get("/events")
    async def events(request: Request) -> SSEResponse:  # noqa: ASYNC124  # pyright: ignore[reportUnusedFunction]
        last = int(request.headers.get("last-event-id", "0"))
        return sse_response(closed.ticks().skip(last), first_id=last + 1)

    return app


def raw_app(closed: Closed) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sse_response(closed.ticks())(scope, receive, send)

    return app


@pytest.mark.parametrize("framework", [raw_app, starlette_app, fastapi_app])
async def test_behind_hypercorn_a_disconnect_runs_the_producers_finally_within_100_ms(
    framework: Any,
) -> None:
    closed = Closed()
    with running_app(framework(closed)) as server:
        lines, left = await read_events_then_leave(server.url + "/events", 3)
        assert lines == ['data: {"i":0}', 'data: {"i":1}', 'data: {"i":2}']
        closed_at = await closed.wait()
    took = closed_at - left
    print(f"\n{framework.__name__}: producer finally ran {took * 1000:.1f} ms after the close")
    assert took < 0.1
    assert closed.started < 10  # stopped, not run to its end


async def test_behind_hypercorn_a_reconnecting_client_resumes_after_its_last_event_id() -> None:
    closed = Closed()
    with running_app(starlette_app(closed)) as server:
        headers = {"last-event-id": "41"}
        async with request(server.url + "/events", headers=headers) as response:
            assert [await response.line() for _ in range(3)] == ["id: 42", 'data: {"i":41}', ""]
        await closed.wait()


def test_starlette_sees_an_sse_response_as_a_response() -> None:

    response = sse_response(bt.from_iterable([1]), headers={"x-extra": "1"})
    assert isinstance(response, Response)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-extra"] == "1"
    assert json.loads(to_json([1, "a"])) == [1, "a"]


async def test_a_heartbeat_being_sent_delays_the_next_item_instead_of_overlapping_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class SlowBeats(Client):
        """Each heartbeat takes 0.5 s to send; ASGI forbids overlapping sends."""

        def __init__(self) -> None:
            super().__init__()
            self.in_send = False
            self.item_times: list[float] = []

        async def send(self, message: Message) -> None:
            assert not self.in_send, "two sends overlapped"
            self.in_send = True
            try:
                if message.get("body") == HEARTBEAT:
                    await trio.sleep(0.5)
                elif message.get("body", b"").startswith(b"id:"):
                    self.item_times.append(trio.current_time())
                await super().send(message)
            finally:
                self.in_send = False

    probe = ScriptedProducer.counting(2, delay=1.2)
    client = SlowBeats()
    start = trio.current_time()
    # Each item takes 1.2 s once asked for; the heartbeat due 1.0 s after the last send is
    # still being sent when the item comes (at 1.2 s, then at 1.5 + 1.2 = 2.7 s).
    await run(sse_response(probe.stream(), heartbeat=1.0), client)
    assert [e["data"] for e in client.events() if "data" in e] == ["0", "1"]
    assert [round(t - start, 6) for t in client.item_times] == [1.5, 3.0]
    assert client.body.count(HEARTBEAT) == 2
