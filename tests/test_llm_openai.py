"""`OpenAIChatModel` against a real HTTP server on loopback (`llm_server.StubServer`):
the streaming format, early exits and timeouts that close the response at once (the server
sees the disconnect), errors that say what went wrong and never hold the API key, and no
leaked task."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
import trio
from llm_server import USAGE, StubServer, running_stub

from beluga_trio._events import EventType
from beluga_trio.llm import (
    MalformedEventError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    to_events,
)
from beluga_trio.llm.openai import OpenAIChatModel
from beluga_trio.schema import Message, Role, StreamChunk, ToolCall, Usage
from beluga_trio.testing import no_leaks

KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with running_stub() as stub:
        yield stub


_MADE: list[OpenAIChatModel] = []


@pytest.fixture
async def test_id(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The test's name, sent along with each request; at the end of the test, every model
    it made with `model_for` is closed (each owns an HTTP client)."""
    yield str(request.node.name)
    while _MADE:
        await _MADE.pop().aclose()


def model_for(server: StubServer, scenario: str, test_id: str, **kwargs: object) -> OpenAIChatModel:
    model = OpenAIChatModel(
        scenario,
        base_url=server.url,
        api_key=KEY,
        headers={"X-Test-Id": test_id},
        **kwargs,  # type: ignore[arg-type]
    )
    _MADE.append(model)
    return model


def assert_no_key(exc: BaseException) -> None:
    """The API key appears nowhere in the error: its text, args, notes, attributes, or in
    the text of any exception chained to it."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        texts = [str(current), repr(current), *map(str, current.args)]
        texts += getattr(current, "__notes__", [])
        texts += [str(v) for v in vars(current).values()] if hasattr(current, "__dict__") else []
        for text in texts:
            assert KEY not in text, f"the API key leaked into {type(current).__name__}: {text}"
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


# ------------------------------------------------------------------------------- streaming


async def test_text_deltas_usage_in_the_last_chunk(server: StubServer, test_id: str) -> None:
    model = model_for(server, "text", test_id)
    with no_leaks():
        chunks = await model.stream("Say hello").collect()
    assert [c.delta for c in chunks if c.delta] == ["Hel", "lo, ", "w\u00f6rld"]
    assert chunks[-2].finish_reason == "stop"
    assert chunks[-1].usage == Usage(**USAGE)
    assert all(c.model_id == "stub-model" for c in chunks)
    assert len(server.records(test_id)) == 1


async def test_invoke_aggregates_the_reply(server: StubServer, test_id: str) -> None:
    reply = await model_for(server, "text", test_id).invoke("Say hello")
    assert reply == Message(
        Role.ASSISTANT,
        "Hello, w\u00f6rld",
        finish_reason="stop",
        usage=Usage(9, 3, 12),
        model_id="stub-model",
    )


async def test_tool_call_deltas_split_across_chunks(server: StubServer, test_id: str) -> None:
    reply = await model_for(server, "tools", test_id).invoke("weather and time?")
    assert reply.tool_calls == (
        ToolCall(0, "call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall(1, "call_b", "get_time", '{"tz": "CET"}'),
    )
    assert reply.tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert reply.finish_reason == "tool_calls"
    assert reply.content == ""


async def test_reasoning_deltas(server: StubServer, test_id: str) -> None:
    reply = await model_for(server, "reasoning", test_id).invoke("think")
    assert (reply.reasoning, reply.content) == ("Thinking.", "Done.")


async def test_events_end_with_done_carrying_usage_and_timing(
    server: StubServer, test_id: str
) -> None:
    events = await to_events(model_for(server, "text", test_id).stream("hi")).collect()
    assert [e.type for e in events] == ["data", "data", "data", "done"]
    done = events[-1]
    assert done.meta["usage"] == Usage(9, 3, 12)
    assert done.meta["time_to_first_chunk"] >= 0
    assert done.meta["chunks"] == 5


async def test_the_request(server: StubServer, test_id: str) -> None:
    model = model_for(server, "text", test_id, options={"temperature": 0.5, "seed": 1})
    conversation = [Message.system("be brief"), Message.user("hi")]
    s = model.stream(conversation, temperature=0.0, max_tokens=5)
    assert server.records(test_id) == []  # cold: building the stream sends nothing
    await s.collect()
    (record,) = server.records(test_id)
    assert record.body == {
        "model": "text",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.0,  # the call's options override the model's
        "seed": 1,
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert record.headers["authorization"] == f"Bearer {KEY}"
    assert record.headers["accept"] == "text/event-stream"
    assert record.headers["content-type"] == "application/json"


async def test_no_key_sends_no_authorization(server: StubServer, test_id: str) -> None:
    model = OpenAIChatModel("text", base_url=server.url, api_key="", headers={"X-Test-Id": test_id})
    async with model:
        await model.invoke("hi")
    (record,) = server.records(test_id)
    assert "authorization" not in record.headers


async def test_the_key_comes_from_the_environment(
    server: StubServer, test_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    model = OpenAIChatModel("text", base_url=server.url + "/", headers={"X-Test-Id": test_id})
    async with model:
        await model.invoke("hi")
    assert server.records(test_id)[0].headers["authorization"] == "Bearer sk-from-env"
    assert "sk-from-env" not in repr(model)


async def test_a_shared_client_is_used_left_open_and_its_connection_reused(
    server: StubServer, test_id: str
) -> None:
    async with httpx2.AsyncClient() as client:
        model = model_for(server, "text", test_id, client=client)
        assert (await model.invoke("a")).content == "Hello, w\u00f6rld"
        assert (await model.invoke("b")).content == "Hello, w\u00f6rld"
        assert not client.is_closed
    first, second = server.records(test_id)
    assert first.finished  # read to its end after [DONE]...
    assert first.client == second.client  # ...so the second request reused the connection


# ------------------------------------------------------------------ leaving closes the response


async def test_an_early_break_closes_the_response_at_once(server: StubServer, test_id: str) -> None:
    model = model_for(server, "endless", test_id)
    with no_leaks():
        async with model.stream("count").open() as chunks:
            async for chunk in chunks:
                if chunk.delta == "t3 ":
                    break
        left = time.monotonic()
    record = await server.wait_for_disconnect(test_id)
    assert record.disconnected_at is not None
    assert record.disconnected_at - left < 0.5  # promptly, not when the body would end (20 s)
    assert not record.finished
    assert record.chunks_sent < 20


async def test_first_closes_the_response_at_once(server: StubServer, test_id: str) -> None:
    with no_leaks():
        first = await model_for(server, "endless", test_id).stream("count").first()
    assert first == StreamChunk(delta="t0 ", model_id="stub-model")
    record = await server.wait_for_disconnect(test_id, patience=1)
    assert not record.finished


async def test_a_slow_first_token_times_out_and_closes_the_response(
    server: StubServer, test_id: str
) -> None:
    model = model_for(server, "slow_first", test_id)
    started = time.monotonic()
    with no_leaks(), pytest.raises(trio.TooSlowError):
        await model.stream("hi").timeout(first=0.2).collect()
    assert time.monotonic() - started < 1.5  # the server would answer after 2 s
    record = await server.wait_for_disconnect(test_id, patience=1)
    assert record.chunks_sent == 0


async def test_a_timeout_between_tokens_closes_the_response(
    server: StubServer, test_id: str
) -> None:
    # Tokens come every 20 ms; a 10 ms limit between them expires after the first few.
    model = model_for(server, "endless", test_id)
    with no_leaks():
        items, error = await model.stream("hi").timeout(between=0.005).collect_result()
    assert isinstance(error, trio.TooSlowError)
    record = await server.wait_for_disconnect(test_id, patience=1)
    assert not record.finished
    assert len(items) < 20


async def test_an_outer_cancellation_closes_the_response(server: StubServer, test_id: str) -> None:
    model = model_for(server, "endless", test_id)
    received: list[StreamChunk] = []

    # The consumer's outer scope is cancelled mid-stream, after a few chunks: not by a deadline,
    # which a loaded machine can pass before the first chunk arrives.
    def take(chunk: StreamChunk) -> None:
        received.append(chunk)
        if len(received) == 3:
            scope.cancel()

    with no_leaks(), trio.CancelScope() as scope:
        await model.stream("hi").for_each(take)
    assert scope.cancelled_caught
    assert len(received) >= 3
    record = await server.wait_for_disconnect(test_id, patience=1)
    assert not record.finished


# ------------------------------------------------------------------------------- HTTP errors


async def test_401_says_so_and_never_holds_the_key(server: StubServer, test_id: str) -> None:
    with no_leaks(), pytest.raises(ModelHTTPError) as caught:
        await model_for(server, "status_401", test_id).invoke("hi")
    error = caught.value
    assert error.status_code == 401
    assert error.message == "Incorrect API key provided: [redacted]."  # the server quoted it
    assert str(error).startswith("HTTP 401 from http://127.0.0.1:")
    assert error.url.endswith("/v1/chat/completions")
    assert error.retry_after is None
    assert_no_key(error)


async def test_429_carries_retry_after(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelHTTPError) as caught:
        await model_for(server, "status_429", test_id).stream("hi").collect()
    assert caught.value.status_code == 429
    assert caught.value.retry_after == 7
    assert "Rate limit reached" in str(caught.value)
    assert_no_key(caught.value)


async def test_500_with_a_plain_text_body(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelHTTPError) as caught:
        await model_for(server, "status_500", test_id).invoke("hi")
    assert (caught.value.status_code, caught.value.message) == (500, "upstream crashed")
    assert isinstance(caught.value, ModelError)
    assert_no_key(caught.value)


async def test_an_unreachable_server(test_id: str) -> None:
    with trio.socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIChatModel("m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
    with no_leaks(), pytest.raises(ModelConnectionError, match="cannot reach") as caught:
        async with model:
            await model.invoke("hi")
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)
    assert_no_key(caught.value)


# ----------------------------------------------------------------- broken and malformed streams


async def test_a_mid_stream_disconnect(server: StubServer, test_id: str) -> None:
    with no_leaks():
        items, error = await model_for(server, "disconnect", test_id).stream("hi").collect_result()
    assert isinstance(error, ModelConnectionError)
    assert "broke off" in str(error)
    assert [c.delta for c in items] == ["Hel"]  # what came before the break is kept
    assert_no_key(error)


async def test_malformed_json_names_the_data(server: StubServer, test_id: str) -> None:
    items, error = await model_for(server, "malformed_json", test_id).stream("hi").collect_result()
    assert isinstance(error, MalformedEventError)
    assert error.data == '{"choices": ['
    assert "not valid JSON" in str(error)
    assert [c.delta for c in items] == ["Hel"]


async def test_an_unexpected_shape_names_the_data(server: StubServer, test_id: str) -> None:
    with pytest.raises(MalformedEventError, match="choices should be a list") as caught:
        await model_for(server, "malformed_shape", test_id).invoke("hi")
    assert caught.value.data == '{"choices": "nope"}'


async def test_a_stream_without_done_is_incomplete(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelConnectionError, match=r"ended before `data: \[DONE\]`"):
        await model_for(server, "no_done", test_id).invoke("hi")


async def test_an_error_inside_the_stream(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelError, match="overloaded"):
        await model_for(server, "error_event", test_id).invoke("hi")


async def test_a_json_answer_instead_of_a_stream(server: StubServer, test_id: str) -> None:
    with pytest.raises(MalformedEventError, match="got a JSON response"):
        await model_for(server, "json_response", test_id).invoke("hi")


async def test_errors_become_error_events_when_asked(server: StubServer, test_id: str) -> None:
    model = model_for(server, "disconnect", test_id)
    events = await to_events(model.stream("hi"), errors="event").collect()
    assert events[-1].type is EventType.ERROR
    assert isinstance(events[-1].error, ModelConnectionError)
    assert events[-1].payload.content == "Hel"
