"""`openai_app` behind a real hypercorn server on 127.0.0.1, driven by clients no one here
wrote: the official ``openai`` SDK (under trio), ``curl -N``, our `OpenAIChatModel`; and as
a gateway in front of another server. Each client disconnects mid-stream in a test that
measures how soon the model's cleanup ran. Then hostile input: each bad request gets its 400
and the server keeps serving."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Generator
from typing import Any

import openai
import pytest
import trio
import trio.testing
from llm_server import StubServer, running_stub
from web_client import request
from web_server import AppServer, eventually, running_app

from beluga_trio.llm import Fail, ModelError, ModelHTTPError, ScriptedModel, split_words
from beluga_trio.llm.openai import OpenAIChatModel
from beluga_trio.schema import Message, ToolCall, Usage
from beluga_trio.web import OpenAIApp, openai_app
from beluga_trio.web._recording import RecordingModel, StreamRecord

LONG = split_words("one two three four five six seven eight nine ten " * 50)
KEY = "sk-gateway-test"


class Served:
    """The model behind the app, recorded (real-time clocks of the server's thread)."""

    def __init__(self, server: AppServer, model: RecordingModel, app: OpenAIApp) -> None:
        self.server = server
        self.model = model
        self.app = app
        self.url = server.url + "/v1"

    async def record(self, after: int) -> StreamRecord:
        """The first stream opened after ``after`` streams, once it has closed."""
        await eventually(lambda: len(self.model.records) > after)
        record = list(self.model.records.values())[after]
        await eventually(lambda: record.closed_mono is not None)
        return record


def script(messages: tuple[Message, ...]) -> list[Any]:
    last = messages[-1].content
    if last == "tools":
        return [
            ToolCall(0, "call_1", "get_weather", '{"city": '),
            ToolCall(0, "", "", '"Paris"}'),
            ToolCall(1, "call_2", "get_time", "{}"),
        ]
    if last == "long":
        return LONG
    if last == "fail late":
        return ["Hello", " there", Fail(RuntimeError("secret-db-password leaked"))]
    if last == "fail early":
        return [Fail(RuntimeError("secret-db-password leaked"))]
    return split_words("Hello, wörld! Streams stop when you leave.")


@pytest.fixture(scope="module")
def served() -> Generator[Served, None, None]:
    model = RecordingModel(ScriptedModel(script, delay=0.01, usage=Usage(5, 7)))
    app = openai_app(model, model_name="scripted-1")
    with running_app(app) as server:
        yield Served(server, model, app)


@pytest.fixture(scope="module")
def keyed() -> Generator[Served, None, None]:
    model = RecordingModel(ScriptedModel(script, delay=0.01))
    app = openai_app(model, api_key=KEY)
    with running_app(app) as server:
        yield Served(server, model, app)


# The openai SDK leaves its own async generators unfinished when a stream ends at
# ``data: [DONE]`` or is closed (it does not aclose them); trio's finalizer then warns. That
# is the SDK's, not ours: ignored for the SDK's generators only, in the SDK's tests only.
sdk_generators = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"\w+\.(aiter_\w+|_aiter_\w+|_iter_events|__stream__|__aiter__) "
    r":pytest.PytestUnraisableExceptionWarning"
)


def sdk(served: Served, api_key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url, api_key=api_key, max_retries=0)


# ------------------------------------------------------------------- the openai SDK


@sdk_generators
async def test_openai_sdk_streaming_with_usage(served: Served) -> None:
    async with sdk(served) as client:
        stream = await client.chat.completions.create(
            model="scripted-1",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, wörld! Streams stop when you leave."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 7)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


@sdk_generators
async def test_openai_sdk_streaming_tool_calls_and_options_reach_the_model(
    served: Served,
) -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    before = len(served.model.records)
    async with sdk(served) as client:
        stream = await client.chat.completions.create(
            model="scripted-1",
            messages=[{"role": "user", "content": "tools"}],
            stream=True,
            tools=tools,
            tool_choice="auto",
            temperature=0.2,
            max_tokens=50,
        )
        deltas = [c.choices[0].delta for c in [chunk async for chunk in stream] if c.choices]
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert [(c.index, c.id, c.function.name if c.function else None) for c in calls] == [
        (0, "call_1", "get_weather"),
        (0, None, None),
        (1, "call_2", "get_time"),
    ]
    assert "".join(c.function.arguments or "" for c in calls if c.index == 0 and c.function) == (
        '{"city": "Paris"}'
    )
    await served.record(before)
    scripted = served.model.model
    assert isinstance(scripted, ScriptedModel)
    options = scripted.calls[-1].options
    assert options == {"tools": tools, "tool_choice": "auto", "temperature": 0.2, "max_tokens": 50}


@sdk_generators
async def test_openai_sdk_not_streaming(served: Served) -> None:
    async with sdk(served) as client:
        reply = await client.chat.completions.create(
            model="scripted-1", messages=[{"role": "user", "content": "hi"}]
        )
        tools = await client.chat.completions.create(
            model="scripted-1", messages=[{"role": "user", "content": "tools"}]
        )
        models = await client.models.list()
    assert reply.choices[0].message.content == "Hello, wörld! Streams stop when you leave."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.total_tokens == 12
    calls = tools.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]  # pyright: ignore[reportAttributeAccessIssue]
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_time", "{}"),
    ]
    assert tools.choices[0].finish_reason == "tool_calls"
    assert [m.id for m in models.data] == ["scripted-1"]


async def deltas_into(received: list[str], stream: Any) -> None:
    async for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")  # noqa: PERF401 - up to the error


@sdk_generators
async def test_openai_sdk_errors(served: Served, keyed: Served) -> None:
    async with sdk(served) as client:
        stream = await client.chat.completions.create(
            model="scripted-1", messages=[{"role": "user", "content": "fail late"}], stream=True
        )
        received: list[str] = []
        with pytest.raises(openai.APIError) as failed:
            await deltas_into(received, stream)
        assert "".join(received) == "Hello there"
        assert failed.value.message == "The server failed to answer."
        assert "secret" not in str(failed.value.body)
        with pytest.raises(openai.InternalServerError) as early:
            await client.chat.completions.create(
                model="scripted-1",
                messages=[{"role": "user", "content": "fail early"}],
                stream=True,
            )
        assert early.value.status_code == 500
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="scripted-1", messages=[], n=1)
        assert bad.value.code == "empty_array"
    async with sdk(keyed, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as unauthorized:
            await client.models.list()
        assert unauthorized.value.code == "invalid_api_key"
    async with sdk(keyed, api_key=KEY) as client:
        assert [m.id async for m in client.models.list()] == ["scripted"]


@sdk_generators
async def test_openai_sdk_disconnect_mid_stream_stops_the_model(served: Served) -> None:
    before = len(served.model.records)
    async with sdk(served) as client:
        stream = await client.chat.completions.create(
            model="scripted-1", messages=[{"role": "user", "content": "long"}], stream=True
        )
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
        left = time.monotonic()
        await stream.close()
    record = await served.record(before)
    assert record.closed_mono is not None
    took = record.closed_mono - left
    print(f"\nopenai SDK (streaming): model closed {took * 1000:.1f} ms after the client left")
    assert record.outcome == "stopped"
    assert record.chunks < len(LONG) // 2
    assert took < 0.1


@sdk_generators
async def test_openai_sdk_cancelled_non_streaming_request_stops_the_model(served: Served) -> None:
    before = len(served.model.records)
    async with sdk(served) as client:
        with trio.move_on_after(0.1):
            await client.chat.completions.create(
                model="scripted-1", messages=[{"role": "user", "content": "long"}]
            )
        left = time.monotonic()
    record = await served.record(before)
    assert record.closed_mono is not None
    took = record.closed_mono - left
    print(f"\nopenai SDK (not streaming): model closed {took * 1000:.1f} ms after the cancel")
    assert record.outcome == "stopped"
    assert took < 0.1


# --------------------------------------------------------------------------- curl -N

CURL = shutil.which("curl")


def curl_args(url: str, body: dict[str, Any]) -> list[str]:
    assert CURL is not None
    return [CURL, "-sS", "-N", "-H", "content-type: application/json", "-d", json.dumps(body), url]


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
async def test_curl_streams_every_event_to_done(served: Served) -> None:
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
    }
    result = await trio.run_process(
        curl_args(served.url + "/chat/completions", body), capture_stdout=True
    )
    events = [e for e in result.stdout.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello, wörld! Streams stop when you leave."
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
async def test_curl_killed_mid_stream_stops_the_model(served: Served) -> None:
    before = len(served.model.records)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    process = await trio.lowlevel.open_process(
        curl_args(served.url + "/chat/completions", body), stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        output = b""
        while output.count(b"data: {") < 3:
            output += await process.stdout.receive_some()
        left = time.monotonic()
        process.kill()  # the socket is closed by the kernel, as when a user hits Ctrl+C
        record = await served.record(before)
    finally:
        process.kill()
        with trio.move_on_after(5, shield=True):
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()
    assert record.closed_mono is not None
    took = record.closed_mono - left
    print(f"\ncurl -N: model closed {took * 1000:.1f} ms after curl was killed")
    assert record.outcome == "stopped"
    assert took < 0.1


# ------------------------------------------------------------ our own OpenAIChatModel


async def test_openai_chat_model_as_a_client(served: Served) -> None:
    client = OpenAIChatModel("scripted-1", base_url=served.url, api_key="")
    reply = await client.invoke("hi")
    assert reply.content == "Hello, wörld! Streams stop when you leave."
    assert reply.usage == Usage(5, 7)
    assert reply.finish_reason == "stop"
    tools = await client.invoke("tools", tools=[{"type": "function", "function": {"name": "f"}}])
    assert [(c.id, c.name, c.arguments) for c in tools.tool_calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_time", "{}"),
    ]
    before = len(served.model.records)
    left = time.monotonic()
    async with client.stream("long").open() as chunks:
        async for chunk in chunks:
            if chunk.delta == " three":
                left = time.monotonic()
                break
    record = await served.record(before)
    assert record.closed_mono is not None
    took = record.closed_mono - left
    print(f"\nOpenAIChatModel: model closed {took * 1000:.1f} ms after the client left")
    assert record.outcome == "stopped"
    assert took < 0.1


# -------------------------------------------------------------------------- a gateway


@pytest.fixture(scope="module")
def upstream() -> Generator[StubServer, None, None]:
    with running_stub() as stub:
        yield stub


async def test_gateway_disconnect_closes_the_upstream_request_at_once(
    upstream: StubServer,
) -> None:
    upstream_model = OpenAIChatModel(
        "endless", base_url=upstream.url, api_key="", headers={"x-test-id": "gateway"}
    )
    with running_app(openai_app(upstream_model)) as gateway:
        client = OpenAIChatModel("endless", base_url=gateway.url + "/v1", api_key="")
        async with client.stream("go").open() as chunks:
            got: list[str] = []
            left = time.monotonic()
            async for chunk in chunks:
                got.append(chunk.delta)
                if len(got) == 3:
                    left = time.monotonic()
                    break
        record = await upstream.wait_for_disconnect("gateway")
    assert got == ["t0 ", "t1 ", "t2 "]
    assert record.disconnected_at is not None
    took = record.disconnected_at - left
    print(f"\ngateway: upstream saw its request closed {took * 1000:.1f} ms after the client left")
    assert record.chunks_sent < 20  # of 1000: it stopped generating
    assert took < 0.1


# ---------------------------------------------------------------------- hostile input


def chat(**fields: Any) -> bytes:
    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


BAD_REQUESTS: list[tuple[str, bytes, str | None]] = [
    ("invalid JSON", b'{"model": "m", "messages": [', "invalid_json"),
    ("not UTF-8", b"\xff\xfe{}", "invalid_json"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ("not an object", b"[1, 2]", "invalid_type"),
    ("no messages", b'{"model": "m"}', "missing_required_parameter"),
    (
        "no model",
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        "missing_required_parameter",
    ),
    ("model not a string", chat(model=5), "invalid_type"),
    ("empty messages", chat(messages=[]), "empty_array"),
    ("messages not an array", chat(messages="hi"), "invalid_type"),
    ("message not an object", chat(messages=["hi"]), "invalid_type"),
    ("unknown role", chat(messages=[{"role": "wizard", "content": "x"}]), "invalid_value"),
    ("content a number", chat(messages=[{"role": "user", "content": 3}]), "invalid_type"),
    (
        "image content",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "unsupported_value",
    ),
    ("tool without id", chat(messages=[{"role": "tool", "content": "x"}]), "invalid_type"),
    ("temperature a string", chat(temperature="hot"), "invalid_type"),
    ("temperature too high", chat(temperature=9), "invalid_value"),
    ("max_tokens negative", chat(max_tokens=-1), "invalid_value"),
    ("stream not a boolean", chat(stream="yes"), "invalid_type"),
    ("stream_options without stream", chat(stream_options={"include_usage": True}), None),
    ("n = 2", chat(n=2), "unsupported_value"),
    ("logprobs", chat(logprobs=True), "unsupported_parameter"),
    ("unknown option", chat(frobnicate=1), "unsupported_parameter"),
    ("tools not functions", chat(tools=[{"type": "retrieval"}]), None),
    ("tool_choice unknown", chat(tool_choice="always"), "invalid_value"),
    ("stop too many", chat(stop=["a", "b", "c", "d", "e"]), None),
]


@pytest.mark.parametrize(("what", "body", "code"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
async def test_a_bad_request_gets_400_and_the_server_keeps_serving(
    served: Served, what: str, body: bytes, code: str | None
) -> None:
    async with request(served.url + "/chat/completions", "POST", body) as response:
        assert response.status == 400, what
        error = json.loads(await response.read_all())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    async with request(served.url + "/chat/completions", "POST", chat()) as response:
        assert response.status == 200
        assert json.loads(await response.read_all())["object"] == "chat.completion"


async def test_a_body_over_the_bound_gets_400(served: Served) -> None:
    big = chat(user="x" * (served.app._max_body + 1))
    async with request(served.url + "/chat/completions", "POST", big) as response:
        assert response.status == 400
        error = json.loads(await response.read_all())["error"]
    assert error["code"] == "request_too_large"
    async with request(served.url + "/v1/nowhere") as response:
        assert response.status == 404
    async with request(served.url + "/chat/completions") as response:
        assert response.status == 405
        assert json.loads(await response.read_all())["error"]["code"] == "method_not_allowed"


async def test_without_the_key_401_in_openai_shape(keyed: Served) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {KEY}"}):
        async with request(keyed.url + "/chat/completions", "POST", chat(), headers) as response:
            assert response.status == 401
            assert json.loads(await response.read_all())["error"]["code"] == "invalid_api_key"
    headers = {"authorization": f"Bearer {KEY}"}
    async with request(keyed.url + "/chat/completions", "POST", chat(), headers) as response:
        assert response.status == 200


def test_openai_app_arguments_are_checked() -> None:
    model = ScriptedModel(["x"])
    with pytest.raises(TypeError, match="takes a ChatModel"):
        openai_app("gpt")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="max_body must be an int >= 1"):
        openai_app(model, max_body=0)
    with pytest.raises(ValueError, match="api_key must be a non-empty str"):
        openai_app(model, api_key="")
    assert openai_app(model).model_name == "scripted"
    assert repr(openai_app(model, model_name="m")) == (
        "OpenAIApp(ScriptedModel(model_id='scripted', delay=0.0), model_name='m')"
    )


# ------------------------------------------------- in memory: the head and model errors


async def call_app(app: OpenAIApp, body: dict[str, Any]) -> list[dict[str, Any]]:
    """One request through the ASGI interface; the messages the app sent."""
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await trio.sleep_forever()
        raise AssertionError("not reached")

    async def send(message: Any) -> None:  # noqa: ASYNC124 - ASGI's send
        sent.append(dict(message))

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [],
    }
    await app(scope, receive, send)
    return sent


def body_of(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_a_slow_first_chunk_gets_the_head_and_heartbeats_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = openai_app(ScriptedModel(["late"], first_delay=40), heartbeat=15)
    sent = await call_app(
        app, {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    assert sent[0]["status"] == 200
    body = body_of(sent)
    assert body.startswith(b": keep-alive\n\n: keep-alive\n\ndata: {")
    assert body.endswith(b"data: [DONE]\n\n")


async def test_a_model_that_fails_before_its_first_chunk_gets_a_status(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    upstream_429 = ModelHTTPError(429, "slow down, sk-secret", url="http://up")
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with caplog.at_level(logging.ERROR, logger="beluga_trio.web"):
        sent = await call_app(openai_app(ScriptedModel([Fail(upstream_429)])), request)
        assert sent[0]["status"] == 429
        error = json.loads(body_of(sent))["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert "sk-secret" not in json.dumps(error)
        not_streaming = {**request, "stream": False}
        sent = await call_app(openai_app(ScriptedModel([Fail(ModelError("down"))])), not_streaming)
        assert sent[0]["status"] == 502
        sent = await call_app(openai_app(ScriptedModel(["a", Fail(KeyError("k"))])), request)
    assert sent[0]["status"] == 200  # too late for a status: an error event ends the stream
    assert body_of(sent).endswith(
        b'event: error\ndata: {"error":{"message":"The server failed to answer.",'
        b'"type":"server_error","param":null,"code":null}}\n\n'
    )
    assert len(caplog.records) == 3
