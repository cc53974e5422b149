"""A real OpenAI-compatible streaming server on loopback, for the HTTP model's tests.

`StubServer` runs hypercorn (an ASGI server) serving `app` in a thread of its own with its own
``trio.run``, bound to 127.0.0.1 on a free port. Its tasks therefore never count among the
test's tasks (the leak checks compare ``tasks_living`` of the test's run) and its clock is
real time, whatever clock the test runs on.

The request's ``model`` names the scenario (`SCENARIOS`): the stub speaks the streaming
format of ``POST /v1/chat/completions`` (role chunk, text deltas, tool-call deltas split
across chunks, a finish chunk, a usage chunk, ``data: [DONE]``), or fails the ways servers
fail. Every request is recorded (`Record`): what was asked, and when the server saw the
client go away.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from hypercorn.config import Config

# hypercorn types a WSGI app with a bare dict, which strict pyright reports at the import.
from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SCENARIOS = (
    "text",  # role chunk, three text deltas sent in odd byte pieces, finish, usage, [DONE]
    "tools",  # two tool calls, their deltas split across chunks
    "reasoning",  # reasoning_content deltas, then text
    "slow_first",  # the first token comes after 2 s
    "endless",  # a token every 20 ms for 20 s, unless the client leaves
    "status_401",  # 401 with a JSON error that quotes the Authorization header back
    "status_429",  # 429 with Retry-After: 7
    "status_500",  # 500 with a plain-text body
    "disconnect",  # two tokens, then the connection is dropped mid-body
    "malformed_json",  # a data line that is not JSON
    "malformed_shape",  # JSON whose "choices" is not a list
    "no_done",  # tokens, then a clean end without a finish reason or [DONE]
    "error_event",  # an {"error": ...} object in the middle of the stream
    "json_response",  # 200 but a JSON body instead of an event stream
    # Reply shapes of real providers; each function below names its source.
    "refusal",  # refusal deltas instead of content
    "content_parts",  # Mistral's reasoning models: content as a list of typed parts
    "usage_details",  # usage with cached and reasoning token counts
    "vllm_error",  # vLLM's flat error object in the stream, then [DONE]
    "done_without_finish",  # text, then [DONE], and no chunk ever gives a finish reason
    "status_429_quota",  # 429 insufficient_quota: do not retry
    "status_429_ms",  # 429 rate_limit_exceeded with retry-after-ms
    "status_503_date",  # 503 with an HTTP-date Retry-After
    "flaky",  # 503 (retry-after-ms: 1) for the first two requests of a test, then "text"
    "flaky_midstream",  # two chunks then a dropped connection, every time
    "endless_event",  # data lines forever, never the blank line that ends the event
    "echo_N",  # 400 whose message is N "a"s followed by the API key (any N: "echo_290")
    "echo_headers",  # 401 quoting every request header value back
)

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


@dataclass
class Record:
    """One request the server received."""

    scenario: str
    body: dict[str, Any]
    headers: dict[str, str]
    test_id: str
    client: tuple[str, int] | None = None  # the client's address: the same for a reused connection
    disconnected_at: float | None = None  # time.monotonic() when the client went away
    chunks_sent: int = 0
    finished: bool = False  # the response body was sent to its end
    attempt: int = 1  # how many requests of this scenario and test, this one included


@dataclass
class StubState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[Record] = field(default_factory=list[Record])

    def add(self, record: Record) -> None:
        with self.lock:
            record.attempt = 1 + sum(
                r.test_id == record.test_id and r.scenario == record.scenario for r in self.records
            )
            self.records.append(record)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` object with a single choice."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "stub-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "model": "stub-model",
        "choices": [],
        "usage": USAGE,
    }


def event(obj: object) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


DONE = b"data: [DONE]\n\n"


def text_events() -> list[bytes]:
    return [
        event(chunk({"role": "assistant", "content": ""})),
        event(chunk({"content": "Hel"})),
        b": keep-alive comment\r\n\r\n",
        event(chunk({"content": "lo, "})),
        event(chunk({"content": "w\u00f6rld"})),
        event(chunk({}, "stop")),
        event(usage_chunk()),
        DONE,
    ]


def tool_events() -> list[bytes]:
    def call(index: int, **fields: Any) -> bytes:
        return event(chunk({"tool_calls": [{"index": index, **fields}]}))

    return [
        event(chunk({"role": "assistant", "content": None})),
        call(0, id="call_a", type="function", function={"name": "get_weather", "arguments": ""}),
        call(0, function={"arguments": '{"ci'}),
        call(0, function={"arguments": 'ty": "Pa'}),
        call(0, function={"arguments": 'ris"}'}),
        call(1, id="call_b", type="function", function={"name": "get_time", "arguments": "{"}),
        call(1, function={"arguments": '"tz": "CET"}'}),
        event(chunk({}, "tool_calls")),
        event(usage_chunk()),
        DONE,
    ]


def reasoning_events() -> list[bytes]:
    return [
        event(chunk({"role": "assistant", "reasoning_content": "Think"})),
        event(chunk({"reasoning_content": "ing."})),
        event(chunk({"content": "Done."})),
        event(chunk({}, "stop")),
        event(usage_chunk()),
        DONE,
    ]


def refusal_events() -> list[bytes]:
    # OpenAI, structured outputs guide, "Refusals": a refusal streams as `delta.refusal`
    # deltas, with `content` null (https://platform.openai.com/docs/guides/structured-outputs).
    return [
        event(chunk({"role": "assistant", "content": None, "refusal": ""})),
        event(chunk({"refusal": "I'm sorry, "})),
        event(chunk({"refusal": "I can't help with that."})),
        event(chunk({}, "stop")),
        event(usage_chunk()),
        DONE,
    ]


def content_parts_events() -> list[bytes]:
    # Mistral's magistral models stream `delta.content` as a list of typed parts, thinking
    # first (BerriAI/litellm#16272, vercel/ai#8072, simonw/llm-mistral#39).
    def thinking(text: str) -> dict[str, Any]:
        return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}

    return [
        event(chunk({"role": "assistant", "content": ""})),
        event(chunk({"content": [thinking("The user says ")]})),
        event(chunk({"content": [thinking("hello.")]})),
        event(chunk({"content": [{"type": "text", "text": "Hello"}]})),
        event(chunk({"content": "!"})),  # and plain strings again
        event(chunk({}, "stop")),
        DONE,
    ]


USAGE_DETAILS = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def usage_details_events() -> list[bytes]:
    # OpenAI, prompt caching guide and the chat completion object's `usage`: the cached
    # part of the prompt and the reasoning part of the completion
    # (https://platform.openai.com/docs/guides/prompt-caching).
    usage = {**usage_chunk(), "usage": USAGE_DETAILS}
    return [
        event(chunk({"role": "assistant", "content": "Hi"})),
        event(chunk({}, "stop")),
        event(usage),
        DONE,
    ]


def vllm_error_events() -> list[bytes]:
    # vLLM's OpenAI server sends its ErrorResponse as a flat object in the stream, then
    # [DONE] (vllm/entrypoints/openai/serving_chat.py, `create_streaming_error_response`).
    error = {
        "object": "error",
        "message": "CUDA out of memory. Tried to allocate 20.00 MiB",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
    return [*text_events()[:2], event(error), DONE]


def done_without_finish_events() -> list[bytes]:
    # A proxy that cuts the upstream reply short and still ends the stream cleanly.
    return [*text_events()[:4], DONE]


def odd_pieces(data: bytes) -> Iterator[bytes]:
    """``data`` in pieces of 1, 2, 3, ... 7 bytes, so events and UTF-8 characters are split."""
    size, start = 1, 0
    while start < len(data):
        yield data[start : start + size]
        start += size
        size = size % 7 + 1


async def app(scope: dict[str, Any], receive: Receive, send: Send, state: StubState) -> None:
    """The ASGI application: lifespan, and ``POST /v1/chat/completions`` by scenario."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    body = json.loads(raw)
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    client = scope.get("client")
    record = Record(body["model"], body, headers, headers.get("x-test-id", ""), client)
    state.add(record)

    async def watch_disconnect(cancel: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not record.finished:  # the client left before the whole body was sent
            record.disconnected_at = time.monotonic()
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_disconnect, nursery.cancel_scope)
        await respond(record, send)
        nursery.cancel_scope.cancel()


async def start(send: Send, status: int = 200, content_type: bytes = b"text/event-stream") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")],
        }
    )


async def body(send: Send, data: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def end(record: Record, send: Send, data: bytes = b"") -> None:
    """The last piece of the body: the response is complete."""
    record.finished = True
    await body(send, data, more=False)


async def stream_events(record: Record, send: Send, events: list[bytes], gap: float = 0.0) -> None:
    await start(send)
    for data in events:
        if gap:
            await trio.sleep(gap)
        await body(send, data)
        record.chunks_sent += 1
    await end(record, send)


SHAPES: dict[str, Callable[[], list[bytes]]] = {
    "refusal": refusal_events,
    "content_parts": content_parts_events,
    "usage_details": usage_details_events,
    "vllm_error": vllm_error_events,
    "done_without_finish": done_without_finish_events,
}


async def respond(record: Record, send: Send) -> None:
    scenario = record.scenario
    if scenario == "text":
        await start(send)
        for piece in odd_pieces(b"".join(text_events())):
            await body(send, piece)
        record.chunks_sent = len(text_events())
        await end(record, send)
    elif scenario == "tools":
        await stream_events(record, send, tool_events())
    elif scenario == "reasoning":
        await stream_events(record, send, reasoning_events())
    elif scenario == "slow_first":
        await start(send)
        await trio.sleep(2.0)
        for data in text_events():
            await body(send, data)
            record.chunks_sent += 1
        await end(record, send)
    elif scenario == "endless":
        tokens = [event(chunk({"content": f"t{i} "})) for i in range(1000)]
        await stream_events(record, send, tokens, gap=0.02)
    elif scenario.startswith("status_"):
        await error_status(record, send, int(scenario.removeprefix("status_")[:3]))
    elif scenario == "disconnect":
        await start(send)
        for data in text_events()[:3]:
            await body(send, data)
            record.chunks_sent += 1
        raise ConnectionAbortedError("the stub drops the connection mid-body on purpose")
    elif scenario == "malformed_json":
        await stream_events(record, send, [*text_events()[:2], b'data: {"choices": [\n\n', DONE])
    elif scenario == "malformed_shape":
        await stream_events(record, send, [*text_events()[:2], event({"choices": "nope"}), DONE])
    elif scenario == "no_done":
        await stream_events(record, send, text_events()[:3])
    elif scenario == "error_event":
        error = {"error": {"message": "the model is overloaded", "type": "server_error"}}
        await stream_events(record, send, [*text_events()[:2], event(error), DONE])
    elif scenario in SHAPES:
        await stream_events(record, send, SHAPES[scenario]())
    elif scenario == "flaky":
        if record.attempt <= 2:
            await error_status(record, send, 503)
        else:
            await stream_events(record, send, text_events())
    elif scenario == "flaky_midstream":
        await start(send)
        for data in text_events()[:3]:
            await body(send, data)
            record.chunks_sent += 1
        raise ConnectionAbortedError("the stub drops the connection mid-body on purpose")
    elif scenario == "endless_event":
        await start(send)
        line = b"data: " + b"x" * 65536 + b"\n"
        while True:  # until the client leaves (the watcher cancels this)
            await body(send, line)
            record.chunks_sent += 1
    elif scenario.startswith("echo_") and scenario != "echo_headers":
        key = record.headers.get("authorization", "").removeprefix("Bearer ")
        message = "a" * int(scenario.removeprefix("echo_")) + key + " was wrong"
        echoed = {"message": message, "type": "invalid_request_error", "code": "bad_key"}
        await json_response(record, send, 400, {"error": echoed})
    elif scenario == "echo_headers":
        quoted = "; ".join(f"{k}={v}" for k, v in sorted(record.headers.items()))
        await json_response(record, send, 401, {"error": {"message": f"denied: {quoted}"}})
    elif scenario == "json_response":
        await start(send, 200, b"application/json")
        await end(record, send, json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode())
    else:
        await error_status(record, send, 404)


async def json_response(
    record: Record,
    send: Send,
    status: int,
    payload: object,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await end(record, send, json.dumps(payload).encode())


async def error_status(record: Record, send: Send, status: int) -> None:
    if record.scenario == "status_429_quota":
        # OpenAI, error codes: 429 "You exceeded your current quota" is insufficient_quota,
        # which waiting does not fix (https://platform.openai.com/docs/guides/error-codes).
        error = {
            "message": "You exceeded your current quota, please check your plan and billing.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
        await json_response(record, send, 429, {"error": error})
    elif record.scenario == "status_429_ms":
        # OpenAI and Azure OpenAI send retry-after-ms with 429s; the openai SDK reads it first
        # (openai-python, _base_client.py, `_parse_retry_after_header`).
        error = {
            "message": "Rate limit reached for gpt-4o in organization org-x on tokens per min",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        await json_response(
            record,
            send,
            429,
            {"error": error},
            ((b"retry-after-ms", b"1500"), (b"retry-after", b"2")),
        )
    elif record.scenario == "status_503_date":
        # RFC 9110, section 10.2.3: Retry-After may be an HTTP date.
        date = ((b"retry-after", b"Wed, 21 Oct 2065 07:28:00 GMT"),)
        await json_response(record, send, 503, {"error": {"message": "overloaded"}}, date)
    elif record.scenario == "flaky":
        soon = ((b"retry-after-ms", b"1"),)
        await json_response(record, send, 503, {"error": {"message": "try again"}}, soon)
    elif status == 401:
        key = record.headers.get("authorization", "").removeprefix("Bearer ")
        error = {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await end(record, send, json.dumps({"error": error}).encode())
    elif status == 429:
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"7")],
            }
        )
        error = {"message": "Rate limit reached for requests", "type": "requests"}
        await end(record, send, json.dumps({"error": error}).encode())
    else:
        await start(send, status, b"text/plain")
        message = (
            b"upstream crashed" if status == 500 else f"no scenario {record.scenario}".encode()
        )
        await end(record, send, message)


class StubServer:
    """The server, running in its own thread. ``url`` is the API root (``.../v1``)."""

    def __init__(self) -> None:
        self.state = StubState()
        self.url = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        started: queue.Queue[str | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        outcome = started.get(timeout=10)
        if isinstance(outcome, BaseException):
            raise outcome
        self.url = outcome + "/v1"

    def stop(self) -> None:
        assert self._thread is not None
        assert self._token is not None
        stop = self._stop
        assert stop is not None
        trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the stub server did not stop"

    def _run(self, started: queue.Queue[str | BaseException]) -> None:
        try:
            trio.run(self._serve, started)
        except Exception as exc:  # handed to the starting thread, and reported
            started.put(exc)
            raise

    async def _serve(self, started: queue.Queue[str | BaseException]) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None  # the "disconnect" scenario raises on purpose
        config.graceful_timeout = 1.0
        self._token = trio.lowlevel.current_trio_token()
        stop = self._stop = trio.Event()
        state = self.state

        async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await app(scope, receive, send, state)

        # hypercorn types ASGI messages as TypedDicts (and WSGI apps with a bare dict); the
        # stub handles plain dicts, which is what it is given at run time.
        framework: Any = asgi

        run = functools.partial(serve, framework, config, shutdown_trigger=stop.wait)
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            started.put(binds[0])

    def records(self, test_id: str) -> list[Record]:
        with self.state.lock:
            return [r for r in self.state.records if r.test_id == test_id]

    async def wait_for_disconnect(self, test_id: str, patience: float = 5.0) -> Record:
        """The request's record once the server saw the client go away (real time)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            found = [r for r in self.records(test_id) if r.disconnected_at is not None]
            if found:
                return found[0]
            await trio.sleep(0.005)
        raise AssertionError(f"the server never saw the client of {test_id!r} go away")


@contextmanager
def running_stub() -> Generator[StubServer, None, None]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
