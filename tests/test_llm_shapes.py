"""`OpenAIChatModel` against the loopback server (`llm_server`) for the reply shapes of real
providers (each scenario's source is in `llm_server`), errors a program can act on, retries,
secrets, connection reuse and the bounds on what a server may send."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
import trio
from llm_server import USAGE_DETAILS, StubServer, running_stub

from beluga_trio.llm import (
    IncompleteReplyError,
    MalformedEventError,
    ModelConnectionError,
    ModelHTTPError,
    ModelStreamError,
    to_events,
)
from beluga_trio.llm._errors import QUOTE_LIMIT
from beluga_trio.llm.openai import OpenAIChatModel
from beluga_trio.schema import Usage
from beluga_trio.testing import no_leaks

KEY = "sk-proj-Zq8vW3kR5tY7uI9oP1aS2dF4gH6jK8lL"

_MADE: list[OpenAIChatModel] = []


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with running_stub() as stub:
        yield stub


@pytest.fixture
async def test_id(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The test's name, sent with each request; every model made with `model_for` is closed
    at the end of the test."""
    yield str(request.node.name)
    while _MADE:
        await _MADE.pop().aclose()


def model_for(
    server: StubServer,
    scenario: str,
    test_id: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: object,
) -> OpenAIChatModel:
    model = OpenAIChatModel(
        scenario,
        base_url=server.url,
        api_key=KEY,
        headers={"X-Test-Id": test_id, **(headers or {})},
        **kwargs,  # type: ignore[arg-type]
    )
    _MADE.append(model)
    return model


def texts_of(exc: BaseException) -> list[str]:
    """Every text an error shows: str, repr, args, attributes, and those of its chain."""
    out: list[str] = []
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        out += [str(current), repr(current), *map(str, current.args)]
        out += [str(v) for v in vars(current).values()]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return out


# ------------------------------------------------------------------------------ reply shapes


async def test_a_refusal_is_kept(server: StubServer, test_id: str) -> None:
    model = model_for(server, "refusal", test_id)
    reply = await model.invoke("help me with something bad")
    assert reply.refusal == "I'm sorry, I can't help with that."
    assert (reply.content, reply.finish_reason) == ("", "stop")
    events = await to_events(model.stream("again")).collect()
    refusals = [e for e in events if e.meta.get("refusal")]
    assert [e.payload for e in refusals] == ["I'm sorry, ", "I can't help with that."]
    assert events[-1].payload.refusal == reply.refusal


async def test_content_parts_text_and_thinking(server: StubServer, test_id: str) -> None:
    reply = await model_for(server, "content_parts", test_id).invoke("hello")
    assert reply.content == "Hello!"
    assert reply.reasoning == "The user says hello."
    assert reply.finish_reason == "stop"


async def test_usage_with_cached_and_reasoning_tokens(server: StubServer, test_id: str) -> None:
    reply = await model_for(server, "usage_details", test_id).invoke("hi")
    assert reply.usage == Usage(2006, 300, 2306, cached_tokens=1920, reasoning_tokens=256)
    assert USAGE_DETAILS["prompt_tokens"] == 2006
    assert reply.usage is not None
    assert reply.usage + Usage(1, 1, cached_tokens=1) == Usage(2007, 301, 2308, 1921, 256)


async def test_a_vllm_error_object_in_the_stream_raises(server: StubServer, test_id: str) -> None:
    model = model_for(server, "vllm_error", test_id)
    with no_leaks():
        items, error = await model.stream("hi").collect_result()
    assert isinstance(error, ModelStreamError)
    assert error.message == "CUDA out of memory. Tried to allocate 20.00 MiB"
    assert (error.code, error.type) == (500, "InternalServerError")
    assert "CUDA out of memory" in str(error)
    assert [c.delta for c in items] == ["Hel"]  # the text before it is kept


async def test_a_reply_without_a_finish_reason_is_incomplete(
    server: StubServer, test_id: str
) -> None:
    model = model_for(server, "done_without_finish", test_id)
    items, error = await model.stream("hi").collect_result()
    assert isinstance(error, IncompleteReplyError)
    assert isinstance(error, ModelConnectionError)
    assert "at `data: [DONE]` without a finish reason" in str(error)
    assert "".join(c.delta for c in items) == "Hello, "
    with pytest.raises(IncompleteReplyError):
        await model.invoke("hi")  # invoke() cannot return it as if it were whole
    lenient = model_for(server, "done_without_finish", test_id, require_finish_reason=False)
    reply = await lenient.invoke("hi")
    assert (reply.content, reply.finish_reason) == ("Hello, ", None)


# ------------------------------------------------------------------------------ HTTP errors


async def test_429_insufficient_quota_is_told_apart_and_not_retried(
    server: StubServer, test_id: str
) -> None:
    model = model_for(server, "status_429_quota", test_id, retries=3, retry_backoff=0.001)
    with pytest.raises(ModelHTTPError) as caught:
        await model.invoke("hi")
    error = caught.value
    assert (error.status_code, error.code, error.type) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "exceeded your current quota" in error.message
    assert "insufficient_quota" in error.body
    assert "code='insufficient_quota'" in str(error)
    assert len(server.records(test_id)) == 1  # a retry cannot help: none was made


async def test_429_retry_after_ms_wins(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelHTTPError) as caught:
        await model_for(server, "status_429_ms", test_id).invoke("hi")
    assert caught.value.retry_after == 1.5
    assert caught.value.code == "rate_limit_exceeded"
    assert len(server.records(test_id)) == 1  # no retry unless asked for


async def test_503_with_an_http_date(server: StubServer, test_id: str) -> None:
    with pytest.raises(ModelHTTPError) as caught:
        await model_for(server, "status_503_date", test_id).invoke("hi")
    when = email.utils.parsedate_to_datetime("Wed, 21 Oct 2065 07:28:00 GMT")
    expected = when.timestamp() - time.time()
    assert caught.value.retry_after is not None
    assert abs(caught.value.retry_after - expected) < 60


# ------------------------------------------------------------------------------ retries


async def test_retries_until_the_server_answers(server: StubServer, test_id: str) -> None:
    model = model_for(server, "flaky", test_id, retries=2, retry_backoff=0.001)
    with no_leaks():
        reply = await model.invoke("hi")
    assert reply.content == "Hello, w\u00f6rld"
    assert [r.attempt for r in server.records(test_id)] == [1, 2, 3]


async def test_too_few_retries_raise_the_last_error(server: StubServer, test_id: str) -> None:
    model = model_for(server, "flaky", test_id, retries=1, retry_backoff=0.001)
    with pytest.raises(ModelHTTPError) as caught:
        await model.invoke("hi")
    assert caught.value.status_code == 503
    assert len(server.records(test_id)) == 2


async def test_a_server_asking_to_wait_too_long_is_not_retried(
    server: StubServer, test_id: str
) -> None:
    model = model_for(server, "status_429_ms", test_id, retries=3, retry_max_wait=1.0)
    with pytest.raises(ModelHTTPError):
        await model.invoke("hi")  # it asks for 1.5 s, more than retry_max_wait
    assert len(server.records(test_id)) == 1


async def test_no_retry_once_a_chunk_reached_the_consumer(server: StubServer, test_id: str) -> None:
    model = model_for(server, "flaky_midstream", test_id, retries=3, retry_backoff=0.001)
    with no_leaks():
        items, error = await model.stream("hi").collect_result()
    assert isinstance(error, ModelConnectionError)
    assert [c.delta for c in items] == ["Hel"]  # no prefix seen twice
    assert len(server.records(test_id)) == 1


async def test_a_connection_error_is_retried(test_id: str) -> None:
    with trio.socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    attempts: list[httpx2.Request] = []

    async def count(request: httpx2.Request) -> None:  # noqa: ASYNC124 - httpx2 awaits hooks
        attempts.append(request)

    async with (
        httpx2.AsyncClient(event_hooks={"request": [count]}) as client,
        OpenAIChatModel(
            "m",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=KEY,
            client=client,
            retries=2,
            retry_backoff=0.001,
        ) as model,
    ):
        with pytest.raises(ModelConnectionError, match="cannot reach"):
            await model.invoke("hi")
    assert len(attempts) == 3


# ------------------------------------------------------------------------------ secrets


async def test_the_key_is_scrubbed_before_the_message_is_cut(
    server: StubServer, test_id: str
) -> None:
    # The server quotes the key after n filler characters, for every n that puts the cut
    # (QUOTE_LIMIT characters) before, inside or after the key.
    for n in range(QUOTE_LIMIT - len(KEY) - 2, QUOTE_LIMIT + 2):
        model = model_for(server, f"echo_{n}", test_id)
        with pytest.raises(ModelHTTPError) as caught:
            await model.invoke("hi")
        for text in texts_of(caught.value):
            assert KEY[:6] not in text, f"the start of the key leaked with n={n}: {text!r}"
        assert caught.value.message.startswith("a" * min(n, QUOTE_LIMIT))


async def test_credential_headers_are_scrubbed(server: StubServer, test_id: str) -> None:
    azure_key = "0123456789abcdef0123456789abcdef"
    custom = "token-Mx93kd83jD83"
    model = model_for(
        server,
        "echo_headers",
        test_id,
        headers={"api-key": azure_key, "X-Custom-Auth": custom},
        secret_headers=["x-custom-auth"],
    )
    with pytest.raises(ModelHTTPError) as caught:
        await model.invoke("hi")
    assert "denied:" in caught.value.message
    for text in texts_of(caught.value):
        for secret in (KEY, azure_key, custom):
            assert secret[:8] not in text, text


# ------------------------------------------------------------------------------ the request


async def test_stream_options_can_be_turned_off(server: StubServer, test_id: str) -> None:
    model = model_for(server, "text", test_id, options={"stream_options": None})
    await model.invoke("hi")
    await model.invoke("hi", stream_options={"include_obfuscation": False})
    first, second = server.records(test_id)
    assert "stream_options" not in first.body
    assert second.body["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    with pytest.raises(TypeError, match="stream_options must be a mapping"):
        model.stream("hi", stream_options=True)


async def test_the_model_reuses_one_connection_by_default(server: StubServer, test_id: str) -> None:
    async with model_for(server, "text", test_id) as model:
        for _ in range(5):
            assert (await model.invoke("hi")).content == "Hello, w\u00f6rld"
    records = server.records(test_id)
    assert len(records) == 5
    assert len({r.client for r in records}) == 1  # one TCP connection for all five
    async with model:  # closed, it can be used again, with a new client
        await model.invoke("hi")
    assert server.records(test_id)[-1].client != records[0].client


async def test_an_http_timeout_is_a_connection_error(server: StubServer, test_id: str) -> None:
    # The server answers after 2 s; httpx2's read timeout (0.2 s) expires first. Depends on
    # the core delivering a producer's own error as itself (issue 10).
    model = model_for(server, "slow_first", test_id, timeout=httpx2.Timeout(0.2))
    with no_leaks(), pytest.raises(ModelConnectionError, match="timed out") as caught:
        await model.invoke("hi")
    assert isinstance(caught.value.__cause__, httpx2.ReadTimeout)


# ------------------------------------------------------------------------------ bounds


async def test_an_event_that_never_ends_is_bounded(server: StubServer, test_id: str) -> None:
    model = model_for(server, "endless_event", test_id)
    with no_leaks(), pytest.raises(MalformedEventError, match="more than") as caught:
        await model.invoke("hi")
    assert len(str(caught.value)) < 1000
    record = await server.wait_for_disconnect(test_id)
    assert record.chunks_sent * 65536 < 64 * 1024 * 1024  # stopped near the bound (16 MiB)
